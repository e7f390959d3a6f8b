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

            EXAMPLES
              udptun-sink
              udptun-sink --listen 198.18.2.2:8080 --json
              udptun-sink --expect 10000 --timeout 30 --interval 0 --histogram
              udptun-sink --synchronised-clocks   # other hosts, clocks kept by PTP

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

    @Flag(help: "Trust one-way latency from senders on other hosts: their clocks and the sink's are synchronised.")
    var synchronisedClocks = false

    @Flag(help: "At the end, print the latency distribution as a text histogram (with --json: latency_buckets_us).")
    var histogram = false

    @OptionGroup var common: CommonOptions

    func validate() throws {
        if let timeout { guard timeout > 0, timeout.isFinite else { throw ValidationError("--timeout must be positive") } }
        if let expect { guard expect > 0 else { throw ValidationError("--expect must be at least 1") } }
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
        let receiver = SinkReceiver(
            socket: socket, expected: expect, deadline: deadline,
            accounting: SinkAccounting(localClock: ClockIdentity.local(), synchronisedClocks: synchronisedClocks))
        let metricsServer = try common.startMetrics(role: "sink", logger: logger) { $0.addSink { receiver.accounting } }
        defer { metricsServer?.stop() }
        logger.info("sink listening", metadata: ["listen": "\(socket.localAddress ?? address)"])

        let report = SinkReport(json: common.json, histogram: histogram)
        var previous: SinkTotals?
        try RoleRunner(lifecycle: lifecycle, signals: signals, interval: common.interval, logger: logger)
            .run(workers: [WorkerThread(name: "sink") { receiver.run(lifecycle) }]) { final, elapsed, sinceLast in
                let now = receiver.accounting
                emitReport(
                    report.line(
                        event: final ? "final" : "report", elapsed: elapsed, interval: sinceLast,
                        now: now, previous: previous))
                previous = now.totals
            }
        if let expect, !receiver.expectationMet {
            logger.error("expected \(expect) payloads, received \(receiver.accounting.totals.received)")
            throw ExitCode(ExitStatus.runtime)
        }
    }
}
