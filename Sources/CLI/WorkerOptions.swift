import ArgumentParser
import Logging
import Engine
import Measurement
import KernelIO
import WireFormat

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

    @Option(help: ArgumentHelp(
        "TUN queues, each with its own UDP socket (SO_REUSEPORT, one port) and its own --threads: the kernel spreads flows over them, so many flows use many cores. Above 1 the device must be multi-queue (created so if it does not exist).",
        valueName: "N"))
    public var queues = 1

    @Option(name: .customLong("cpu"), help: ArgumentHelp(
        "Pin the data-plane threads to these CPUs, one per thread in order (e.g. 1, or 0,1 with --threads 2; a single CPU takes every thread; with --queues, queue 0's threads come first). Default: the scheduler places them.",
        valueName: "LIST"))
    public var cpus: CPUList?

    /// Most queues a TUN device takes is 256; more than a few dozen only adds idle threads.
    public static let maximumQueues = 64

    public init() {}

    /// Data-plane threads in all: `threads` per queue.
    public var threadCount: Int { threads * queues }

    public func validate() throws {
        guard threads == 1 || threads == 2 else { throw ValidationError("--threads must be 1 or 2") }
        guard (1...Self.maximumQueues).contains(queues) else { throw ValidationError("--queues must be 1 to \(Self.maximumQueues)") }
        guard busyPoll <= 10_000_000 else { throw ValidationError("--busy-poll must be at most 10000000 µs (10 s)") }
        if let cpus {
            guard !cpus.cpus.isEmpty, cpus.cpus.count <= threadCount else {
                throw ValidationError("--cpu \(cpus) names \(cpus.cpus.count) CPUs for \(threadCount) data-plane thread\(threadCount == 1 ? "" : "s")")
            }
            let allowed = CPUAffinity.allowedCPUs()
            if let refused = cpus.cpus.first(where: { !allowed.contains($0) }) {
                throw ValidationError("--cpu \(cpus): CPU \(refused) is not available to this process (it may run on CPUs \(CPUList(allowed)))")
            }
        }
    }

    /// The thread layout the options ask for.
    public var layout: Tunnel.Layout {
        Tunnel.Layout(threadsPerQueue: threads, polling: PollingPolicy(busyPollNanoseconds: busyPoll * 1000), cpus: cpus?.cpus)
    }

    /// Starts the tunnel's data-plane threads as asked and logs how they are laid out.
    public func start(_ tunnel: Tunnel, lifecycle: Lifecycle, logger: Logger) -> [WorkerThread] {
        logger.info("data plane", metadata: [
            "threads": "\(threads == 1 ? "1 (both directions)" : "2 (one per direction)")\(queues > 1 ? " per queue" : "")",
            "queues": "\(tunnel.queues.count)", "busy_poll_us": "\(busyPoll)", "cpus": "\(cpus?.description ?? "any")"])
        let started = tunnel.start(layout, lifecycle: lifecycle)
        // Checked against the affinity mask at parse time; a CPU taken offline since then leaves
        // that thread where the scheduler puts it.
        for error in started.unpinned {
            logger.warning("data-plane thread left unpinned", metadata: ["error": "\(error)"])
        }
        return started.workers
    }
}
