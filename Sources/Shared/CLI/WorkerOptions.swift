import ArgumentParser
import Logging

/// `--threads`, `--busy-poll` and `--cpu`: how the client's and relay's data plane uses threads and waits.
public struct WorkerOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Data-plane threads: 2 gives each direction its own thread (most throughput); 1 moves both directions on one thread, so a reply leaves on the thread that forwarded the request (lower latency at low rates).",
        valueName: "1|2"))
    public var threads = 2

    @Option(help: ArgumentHelp(
        "After each packet, keep polling this many microseconds before sleeping (0 = sleep at once). Takes packets without a wake-up, at the cost of a busy core while traffic flows; set it above the gap between your packets to never sleep under load.",
        valueName: "USEC"))
    public var busyPoll: UInt64 = 0

    @Option(name: .customLong("cpu"), help: ArgumentHelp(
        "Pin the data-plane threads to these CPUs, one per thread in order (e.g. 1, or 0,1 with --threads 2; a single CPU takes every thread). Default: the scheduler places them.",
        valueName: "LIST"))
    public var cpus: CPUList?

    public init() {}

    public func validate() throws {
        guard threads == 1 || threads == 2 else { throw ValidationError("--threads must be 1 or 2") }
        guard busyPoll <= 10_000_000 else { throw ValidationError("--busy-poll must be at most 10000000 µs (10 s)") }
        if let cpus {
            guard !cpus.cpus.isEmpty, cpus.cpus.count <= threads else {
                throw ValidationError("--cpu \(cpus) names \(cpus.cpus.count) CPUs for \(threads) data-plane thread\(threads == 1 ? "" : "s")")
            }
            let allowed = CPUAffinity.allowedCPUs()
            if let refused = cpus.cpus.first(where: { !allowed.contains($0) }) {
                throw ValidationError("--cpu \(cpus): CPU \(refused) is not available to this process (it may run on CPUs \(CPUList(allowed)))")
            }
        }
    }

    public var polling: PollingPolicy { PollingPolicy(busyPollNanoseconds: busyPoll * 1000) }

    /// The data-plane threads for the two directions, laid out as asked.
    public func startWorkers<Out: Encapsulation, In: Encapsulation>(
        outbound: OutboundPipeline<Out>, inbound: InboundPipeline<In>, lifecycle: Lifecycle, logger: Logger
    ) -> [WorkerThread] {
        let polling = polling
        logger.info("data plane", metadata: [
            "threads": "\(threads == 1 ? "1 (both directions)" : "2 (one per direction)")",
            "busy_poll_us": "\(busyPoll)", "cpus": "\(cpus?.description ?? "any")"])
        let workers = threads == 1
            ? [WorkerThread(name: "tun⇄udp") {
                PipelineDriver(stages: [outbound.makeStage(), inbound.makeStage()], policy: polling).run(lifecycle)
            }]
            : [
                WorkerThread(name: "tun→udp") { PipelineDriver(stages: [outbound.makeStage()], policy: polling).run(lifecycle) },
                WorkerThread(name: "udp→tun") { PipelineDriver(stages: [inbound.makeStage()], policy: polling).run(lifecycle) },
            ]
        if let cpus {
            for (index, worker) in workers.enumerated() {
                // Checked against the affinity mask at parse time; a CPU taken offline since then
                // leaves that thread where the scheduler puts it.
                do throws(SystemError) { try worker.pin(to: cpus.cpus[index % cpus.cpus.count]) } catch {
                    logger.warning("data-plane thread left unpinned", metadata: ["error": "\(error)"])
                }
            }
        }
        return workers
    }
}
