import KernelIO
import WireFormat

/// A tunnel endpoint's data plane, assembled: for every queue, a TUN queue, a socket and counters,
/// and the threads that move packets between them both ways. Client and relay differ only in the
/// route, the policy and whether there is a return-path table.
public struct Tunnel: Sendable {
    /// How the data plane uses threads.
    public struct Layout: Sendable, Equatable {
        /// Threads per queue.
        public enum Threads: Sendable, Equatable {
            /// Both directions on one thread: a reply leaves on the thread that forwarded the
            /// request (lower latency at low rates).
            case one
            /// A thread per direction (both directions at full speed at once).
            case two
            /// `--threads auto`: one thread while traffic is light; under load the layout splits (the
            /// inbound direction moves to a second thread) and merges again once it is light.
            case auto(SplitPolicy)
        }

        public var threads: Threads
        public var polling: PollingPolicy
        /// CPUs to pin the threads to, one per thread in order (queue 0's first), cycling when shorter.
        public var cpus: [Int]?

        public init(threads: Threads = .auto(SplitPolicy()), polling: PollingPolicy = PollingPolicy(), cpus: [Int]? = nil) {
            self.threads = threads
            self.polling = polling
            self.cpus = cpus
        }
    }

    /// What `start` made: the threads, and the pinnings the kernel refused (the threads then run
    /// where the scheduler puts them).
    public struct Started {
        public var workers: [WorkerThread]
        public var unpinned: [SystemError]
        /// The auto layout's inbound stages, one per queue (their splits and merges).
        public var lentStages: [LentStage<InboundStage>]

        /// The reports' `thread_hand_overs`: the auto layout's splits and merges, all queues.
        public var handOvers: Int { lentStages.reduce(0) { $0 + $1.splitsAndMerges } }
    }

    public let queues: [any TunQueue]
    public let sockets: [any DatagramSocket]
    public let counters: [TunnelCounters]
    public let framing: any Framing
    public let route: OutboundRoute
    public let policy: InboundPolicy
    public let clients: ClientTable?
    public let ownAddresses: OwnAddresses?
    /// Per-session counts (the relay's report); nil counts none.
    public let sessionCounters: SessionCounters?
    /// Replies to unauthenticated datagrams, one budget for every queue.
    public let replyBudget: ReplyBudget

    /// Queue i moves TUN queue `queues[i]` to `sockets[i]` and back, counting in `counters[i]`.
    public init(
        queues: [any TunQueue], sockets: [any DatagramSocket], counters: [TunnelCounters],
        framing: any Framing, route: OutboundRoute, policy: InboundPolicy,
        clients: ClientTable? = nil, ownAddresses: OwnAddresses? = nil, sessionCounters: SessionCounters? = nil,
        replyBudget: ReplyBudget = ReplyBudget()
    ) {
        precondition(
            !queues.isEmpty && queues.count == sockets.count && queues.count == counters.count,
            "one socket and counters per queue")
        self.queues = queues
        self.sockets = sockets
        self.counters = counters
        self.framing = framing
        self.route = route
        self.policy = policy
        self.clients = clients
        self.ownAddresses = ownAddresses
        self.sessionCounters = sessionCounters
        self.replyBudget = replyBudget
    }

    public func outboundStage(queue index: Int) -> OutboundStage {
        OutboundStage(
            tunQueue: queues[index], socket: sockets[index], framing: framing, route: route,
            counters: counters[index], sessionCounters: sessionCounters)
    }

    /// Every queue writes through the queue of the packet's flow (`FlowSteering`), so it gets them all.
    public func inboundStage(queue index: Int) -> InboundStage {
        InboundStage(
            socket: sockets[index], tunQueues: queues, framing: framing, policy: policy,
            counters: counters[index], clients: clients, ownAddresses: ownAddresses, sessionCounters: sessionCounters,
            replyBudget: replyBudget)
    }

    /// Starts the data-plane threads for every queue, laid out as asked. Thread names stay within
    /// Linux's 15 bytes ("tun→udp" is 9). Throws only when the auto layout's doorbells (eventfds)
    /// cannot be made; then no thread was started.
    public func start(_ layout: Layout, lifecycle: Lifecycle) throws(SystemError) -> Started {
        var lentStages: [LentStage<InboundStage>] = []
        if case let .auto(policy) = layout.threads {
            for index in queues.indices { lentStages.append(try LentStage(inboundStage(queue: index), policy: policy)) }
        }
        var workers: [WorkerThread] = []
        for index in queues.indices {
            let suffix = queues.count > 1 ? "/\(index)" : ""
            let polling = layout.polling
            // Each thread sets up its own stages (buffers included) when it starts; a lent stage is
            // made here, as both of its threads need it.
            switch layout.threads {
            case .one:
                workers.append(
                    WorkerThread(name: "tun⇄udp\(suffix)") {
                        var driver = PipelineDriver(outboundStage(queue: index), inboundStage(queue: index), policy: polling)
                        driver.run(lifecycle)
                    })
            case .two:
                workers.append(
                    WorkerThread(name: "tun→udp\(suffix)") {
                        var driver = PipelineDriver(outboundStage(queue: index), policy: polling)
                        driver.run(lifecycle)
                    })
                workers.append(
                    WorkerThread(name: "udp→tun\(suffix)") {
                        var driver = PipelineDriver(inboundStage(queue: index), policy: polling)
                        driver.run(lifecycle)
                    })
            case .auto:
                let lent = lentStages[index]
                workers.append(
                    WorkerThread(name: "tun⇄udp\(suffix)") {
                        var driver = LendingDriver(outboundStage(queue: index), lending: lent, polling: polling)
                        driver.run(lifecycle)
                    })
                workers.append(
                    WorkerThread(name: "udp→tun\(suffix)") {
                        HelperDriver(helping: lent, polling: polling).run(lifecycle)
                    })
            }
        }
        var unpinned: [SystemError] = []
        if let cpus = layout.cpus, !cpus.isEmpty {
            for (index, worker) in workers.enumerated() {
                do throws(SystemError) { try worker.pin(to: cpus[index % cpus.count]) } catch { unpinned.append(error) }
            }
        }
        return Started(workers: workers, unpinned: unpinned, lentStages: lentStages)
    }
}
