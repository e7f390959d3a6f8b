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
            Every datagram is counted per source. Payloads from udptun-client's generator are also checked: received (unique), lost (gaps below the highest sequence seen), duplicates, reordered, corrupt (CRC or length wrong), and one-way latency (valid when sender and sink share a clock, as in the one-host lab). Anything else counts as unsequenced.

            EXAMPLES
              udptun-sink
              udptun-sink --listen 198.18.2.2:8080 --json
              udptun-sink --expect 10000 --timeout 30 --interval 0

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
        let receiver = SinkReceiver(socket: socket, expected: expect, deadline: deadline)
        let metricsServer = try common.startMetrics(role: "sink", logger: logger) { $0.addSink { receiver.accounting } }
        defer { metricsServer?.stop() }
        logger.info("sink listening", metadata: ["listen": "\(socket.localAddress ?? address)"])

        let report = SinkReport(json: common.json)
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
