import ArgumentParser
import Engine
import KernelIO
import Logging

/// `--threads`, `--busy-poll` and `--cpu`: how the client's and relay's data plane uses threads and waits.
public struct WorkerOptions: ParsableArguments {
    /// `--threads`: a count, or the auto layout (`Tunnel.Layout.Threads.auto`).
    public enum ThreadChoice: String, ExpressibleByArgument, Sendable {
        case auto, one = "1", two = "2"

        /// What the log and the tests call the layout.
        var summary: String {
            switch self {
            case .auto: "auto (both directions on one, the inbound on a second under load)"
            case .one: "1 (both directions)"
            case .two: "2 (one per direction)"
            }
        }
    }

    @Option(
        help: ArgumentHelp(
            "Data-plane threads: auto (the default) moves both directions on one thread while traffic is light, so a reply leaves on the thread that forwarded the request, and gives the inbound direction a thread of its own under load; 2 always gives each direction its own thread; 1 never does.",
            valueName: "auto|1|2"))
    public var threads: ThreadChoice = .auto

    @Option(
        help: ArgumentHelp(
            "After each packet, keep polling this many microseconds before sleeping (0 = sleep at once). Takes packets without a wake-up, at the cost of a busy core while traffic flows; set it above the gap between your packets to never sleep under load.",
            valueName: "USEC"))
    public var busyPoll: UInt64 = 0

    @Option(
        help: ArgumentHelp(
            "TUN queues, each with its own UDP socket (SO_REUSEPORT, one port) and its own --threads: the kernel spreads flows over them, so many flows use many cores. Above 1 the device must be multi-queue (created so if it does not exist).",
            valueName: "N"))
    public var queues = 1

    @Option(
        name: .customLong("cpu"),
        help: ArgumentHelp(
            "Pin the data-plane threads to these CPUs, one per thread in order (e.g. 1, or 0,1 with --threads 2; a single CPU takes every thread; with --queues, queue 0's threads come first). Default: the scheduler places them.",
            valueName: "LIST"))
    public var cpus: CPUList?

    /// Most queues a TUN device takes is 256; more than a few dozen only adds idle threads.
    public static let maximumQueues = 64

    public init() {}

    /// Data-plane threads in all (the auto layout's helper counts: it exists, asleep while merged).
    public var threadCount: Int { (threads == .one ? 1 : 2) * queues }

    public func validate() throws {
        guard (1...Self.maximumQueues).contains(queues) else { throw ValidationError("--queues must be 1 to \(Self.maximumQueues)") }
        guard busyPoll <= 10_000_000 else { throw ValidationError("--busy-poll must be at most 10000000 µs (10 s)") }
        if let cpus {
            guard !cpus.cpus.isEmpty, cpus.cpus.count <= threadCount else {
                throw ValidationError(
                    "--cpu \(cpus) names \(cpus.cpus.count) CPUs for \(threadCount) data-plane thread\(threadCount == 1 ? "" : "s")")
            }
            let allowed = CPUAffinity.allowedCPUs()
            if let refused = cpus.cpus.first(where: { !allowed.contains($0) }) {
                throw ValidationError(
                    "--cpu \(cpus): CPU \(refused) is not available to this process (it may run on CPUs \(CPUList(allowed)))")
            }
        }
    }

    /// The thread layout the options ask for.
    public var layout: Tunnel.Layout {
        let layout: Tunnel.Layout.Threads =
            switch threads {
            case .auto: .auto(SplitPolicy())
            case .one: .one
            case .two: .two
            }
        return Tunnel.Layout(threads: layout, polling: PollingPolicy(busyPollNanoseconds: busyPoll * 1000), cpus: cpus?.cpus)
    }

    /// Starts the tunnel's data-plane threads as asked and logs how they are laid out.
    public func start(_ tunnel: Tunnel, lifecycle: Lifecycle, logger: Logger) throws -> Tunnel.Started {
        logger.info(
            "data plane",
            metadata: [
                "threads": "\(threads.summary)\(queues > 1 ? " per queue" : "")",
                "queues": "\(tunnel.queues.count)", "busy_poll_us": "\(busyPoll)", "cpus": "\(cpus?.description ?? "any")"
            ])
        let started = try tunnel.start(layout, lifecycle: lifecycle)
        // Checked against the affinity mask at parse time; a CPU taken offline since then leaves
        // that thread where the scheduler puts it.
        for error in started.unpinned {
            logger.warning("data-plane thread left unpinned", metadata: ["error": "\(error)"])
        }
        return started
    }
}
