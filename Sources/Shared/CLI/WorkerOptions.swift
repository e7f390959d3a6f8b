import ArgumentParser
import Logging

/// `--threads` and `--busy-poll`: how the client's and relay's data plane uses threads and waits.
public struct WorkerOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Data-plane threads: 2 gives each direction its own thread (most throughput); 1 moves both directions on one thread, so a reply leaves on the thread that forwarded the request (lower latency at low rates).",
        valueName: "1|2"))
    public var threads = 2

    @Option(help: ArgumentHelp(
        "After each packet, keep polling this many microseconds before sleeping (0 = sleep at once). Takes packets without a wake-up, at the cost of a busy core while traffic flows; set it above the gap between your packets to never sleep under load.",
        valueName: "USEC"))
    public var busyPoll: UInt64 = 0

    public init() {}

    public func validate() throws {
        guard threads == 1 || threads == 2 else { throw ValidationError("--threads must be 1 or 2") }
        guard busyPoll <= 10_000_000 else { throw ValidationError("--busy-poll must be at most 10000000 µs (10 s)") }
    }

    public var polling: PollingPolicy { PollingPolicy(busyPollNanoseconds: busyPoll * 1000) }

    /// The data-plane threads for the two directions, laid out as asked.
    public func startWorkers<Out: Encapsulation, In: Encapsulation>(
        outbound: OutboundPipeline<Out>, inbound: InboundPipeline<In>, lifecycle: Lifecycle, logger: Logger
    ) -> [WorkerThread] {
        let polling = polling
        logger.info("data plane", metadata: [
            "threads": "\(threads == 1 ? "1 (both directions)" : "2 (one per direction)")",
            "busy_poll_us": "\(busyPoll)"])
        if threads == 1 {
            return [WorkerThread(name: "tun⇄udp") {
                PipelineDriver(stages: [outbound.makeStage(), inbound.makeStage()], policy: polling).run(lifecycle)
            }]
        }
        return [
            WorkerThread(name: "tun→udp") { PipelineDriver(stages: [outbound.makeStage()], policy: polling).run(lifecycle) },
            WorkerThread(name: "udp→tun") { PipelineDriver(stages: [inbound.makeStage()], policy: polling).run(lifecycle) },
        ]
    }
}
