import ArgumentParser
import CLI
import KernelIO
import Logging
import Measurement
import Monitoring
import WireFormat

@main
struct SinkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "udptun-sink",
        abstract: "Receive UDP payloads and count them: loss, duplicates, order, integrity and latency.",
        usage: "udptun-sink [--listen HOST:PORT] [--expect N] [--timeout S] [<options>]",
        discussion: """
            Every datagram is counted per source. Payloads from udptun-client's generator are also checked: received (unique), lost (gaps below the highest sequence seen), duplicates, reordered, corrupt (CRC or length wrong), one-way latency (p50, p90, p99, p99.9, max) and RFC 3550 interarrival jitter, in total and per source. Anything else counts as unsequenced.

            One-way latency is the sink's receive time minus the payload's send time, so it means something only where both read one clock. Each payload names its sender's clock (a hash of the host's boot id): latency is shown for payloads from the sink's own host, and for others only with --synchronised-clocks (when the hosts run PTP or chrony well enough for the figures that matter); otherwise the report says the clocks are not shared. Jitter uses differences of transit times only and is shown either way.

            With --reflect the sink is also a TWAMP-light-style reflector: it answers every generator payload to the address and port it came from, with the probe's stream, sequence and send time echoed and its own count of that sender's probes, so udptun-client --measure-rtt measures round trips on its own clock (no clock sync between the machines) and tells loss on the way out from loss on the way back. Answers are rate limited per source address (--reflect-rate, with a burst of a tenth of a second's worth, at least 32), go only to sources inside --allow when it is given, never to port 0 or an address that is not unicast; other datagrams and corrupt payloads get none. The report counts reflected, refused by --allow, by the rate limit and by address.

            EXAMPLES
              udptun-sink
              udptun-sink --listen 198.18.2.2:8080 --json
              udptun-sink --expect 10000 --timeout 30 --interval 0 --histogram
              udptun-sink --synchronised-clocks   # other hosts, clocks kept by PTP
              udptun-sink --reflect --allow 198.19.0.0/24     # answer the tunnel's clients
              udptun-sink --reflect --allow 198.19.0.1 --reflect-rate 20000

            EXIT STATUS
              0   stopped by SIGINT/SIGTERM, or --expect reached
              1   --timeout passed before --expect was reached, or a runtime failure
              64  usage error
              78  address in use or not available
            """,
        version: UDPTunVersion.current)

    @Option(help: "UDP address to listen on (HOST:PORT, [IPV6]:PORT or :PORT).")
    var listen = "0.0.0.0:8080"

    @Option(help: "Exit 0 as soon as this many unique generator payloads have arrived.")
    var expect: UInt64?

    @Option(help: "Exit after this many seconds (1 if --expect was not reached by then).")
    var timeout: Double?

    @Flag(help: "Answer every generator payload to its sender, for udptun-client --measure-rtt (round trips without a shared clock).")
    var reflect = false

    @Option(
        help: ArgumentHelp(
            "With --reflect: answers per second to each source address (1 to 1000000); more are refused and counted.",
            valueName: "n"))
    var reflectRate: UInt64 = Reflector.defaultRate

    @Option(
        name: .customLong("allow"),
        help: ArgumentHelp(
            "With --reflect: answer only sources in this prefix (repeatable; 'any' answers everyone, the default). Everything is still counted.",
            valueName: "CIDR"))
    var allow: [String] = []

    @Flag(help: "Trust one-way latency from senders on other hosts: their clocks and the sink's are synchronised.")
    var synchronisedClocks = false

    @Flag(help: "At the end, print the latency distribution as a text histogram (with --json: latency_buckets_us).")
    var histogram = false

    @OptionGroup var common: CommonOptions

    func validate() throws {
        if let timeout { guard timeout > 0, timeout.isFinite else { throw ValidationError("--timeout must be positive") } }
        if let expect { guard expect > 0 else { throw ValidationError("--expect must be at least 1") } }
        guard (1...1_000_000).contains(reflectRate) else { throw ValidationError("--reflect-rate must be 1 to 1000000") }
        if !reflect {
            if !allow.isEmpty { throw ValidationError("--allow limits the answers of --reflect: give --reflect too") }
            if reflectRate != Reflector.defaultRate { throw ValidationError("--reflect-rate needs --reflect") }
        }
        _ = try AllowedSources.parse(allow)
    }

    func run() throws {
        try runReportingErrors(program: "udptun-sink") { try runSink() }
    }

    private func runSink() throws {
        let logger = common.makeLogger(label: "udptun.sink")
        let address = try AddressResolver.resolve(listen, defaultPort: 8080)
        let signals = try SignalWaiter()
        let socket = try UDPSocket(for: address, bind: true, socketBufferBytes: 16 << 20)
        let lifecycle = try Lifecycle()
        let deadline = timeout.map { Clock.monotonicNanoseconds() + UInt64($0 * 1e9) }
        // No --allow: anyone (as --allow any).
        let allowed = allow.isEmpty ? nil : try AllowedSources.parse(allow)
        let reflector = reflect ? Reflector(rate: reflectRate, allowed: allowed) : nil
        let receiver = SinkReceiver(
            socket: socket, expected: expect, deadline: deadline,
            accounting: SinkAccounting(localClock: ClockIdentity.local(), synchronisedClocks: synchronisedClocks),
            reflector: reflector)
        let metricsServer = try common.startMetrics(role: "sink", logger: logger) { $0.addSink { receiver.accounting } }
        defer { metricsServer?.stop() }
        logger.info("sink listening", metadata: ["listen": "\(socket.localAddress ?? address)"])
        if let reflector {
            logger.info(
                "reflecting generator payloads",
                metadata: [
                    "rate": "\(reflector.rate)/s per source", "burst": "\(reflector.burst)",
                    "allow": "\(allow.isEmpty ? "any" : allow.joined(separator: ","))"
                ])
        }

        let report = SinkReport(json: common.json, histogram: histogram)
        var previous: SinkTotals?
        try RoleRunner(lifecycle: lifecycle, signals: signals, interval: common.interval, logger: logger)
            .run(workers: [WorkerThread(name: "sink") { receiver.run(lifecycle) }]) { final, elapsed, sinceLast in
                let now = receiver.accounting
                emitReport(
                    report.line(
                        event: final ? "final" : "report", elapsed: elapsed, interval: sinceLast,
                        now: now, previous: previous, reflector: receiver.reflectorCounts))
                previous = now.totals
            }
        if let expect, !receiver.expectationMet {
            logger.error("expected \(expect) payloads, received \(receiver.accounting.totals.received)")
            throw ExitCode(ExitStatus.runtime)
        }
    }
}
