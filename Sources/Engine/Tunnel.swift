import KernelIO
import WireFormat

/// A tunnel endpoint's data plane, assembled: for every queue, a TUN queue, a socket and counters,
/// and the threads that move packets between them both ways. Client and relay differ only in the
/// route, the policy and whether there is a return-path table.
public struct Tunnel: Sendable {
    /// How the data plane uses threads.
    public struct Layout: Sendable, Equatable {
        /// 2: a thread per direction (most throughput); 1: both directions on one thread (a reply
        /// leaves on the thread that forwarded the request: lower latency at low rates). Per queue.
        public var threadsPerQueue: Int
        public var polling: PollingPolicy
        /// CPUs to pin the threads to, one per thread in order (queue 0's first), cycling when shorter.
        public var cpus: [Int]?

        public init(threadsPerQueue: Int = 2, polling: PollingPolicy = PollingPolicy(), cpus: [Int]? = nil) {
            precondition(threadsPerQueue == 1 || threadsPerQueue == 2, "1 or 2 threads per queue")
            self.threadsPerQueue = threadsPerQueue
            self.polling = polling
            self.cpus = cpus
        }
    }

    /// What `start` made: the threads, and the pinnings the kernel refused (the threads then run
    /// where the scheduler puts them).
    public struct Started {
        public var workers: [WorkerThread]
        public var unpinned: [SystemError]
    }

    public let queues: [any TunQueue]
    public let sockets: [any DatagramSocket]
    public let counters: [TunnelCounters]
    public let encapsulation: any Encapsulation
    public let route: OutboundRoute
    public let policy: InboundPolicy
    public let clients: ClientTable?
    public let ownAddresses: OwnAddresses?
    /// Per-session counts (the relay's report); nil counts none.
    public let sessionCounters: SessionCounters?

    /// Queue i moves TUN queue `queues[i]` to `sockets[i]` and back, counting in `counters[i]`.
    public init(queues: [any TunQueue], sockets: [any DatagramSocket], counters: [TunnelCounters],
                encapsulation: any Encapsulation, route: OutboundRoute, policy: InboundPolicy,
                clients: ClientTable? = nil, ownAddresses: OwnAddresses? = nil, sessionCounters: SessionCounters? = nil) {
        precondition(!queues.isEmpty && queues.count == sockets.count && queues.count == counters.count,
                     "one socket and counters per queue")
        self.queues = queues
        self.sockets = sockets
        self.counters = counters
        self.encapsulation = encapsulation
        self.route = route
        self.policy = policy
        self.clients = clients
        self.ownAddresses = ownAddresses
        self.sessionCounters = sessionCounters
    }

    public func outboundStage(queue index: Int) -> OutboundStage {
        OutboundStage(tunQueue: queues[index], socket: sockets[index], encapsulation: encapsulation, route: route,
                      counters: counters[index], sessionCounters: sessionCounters)
    }

    /// Every queue writes through the queue of the packet's flow (`FlowSteering`), so it gets them all.
    public func inboundStage(queue index: Int) -> InboundStage {
        InboundStage(socket: sockets[index], tunQueues: queues, encapsulation: encapsulation, policy: policy,
                     counters: counters[index], clients: clients, ownAddresses: ownAddresses, sessionCounters: sessionCounters)
    }

    /// Starts the data-plane threads for every queue, laid out as asked. Thread names stay within
    /// Linux's 15 bytes ("tun→udp" is 9).
    public func start(_ layout: Layout, lifecycle: Lifecycle) -> Started {
        var workers: [WorkerThread] = []
        for index in queues.indices {
            let suffix = queues.count > 1 ? "/\(index)" : ""
            let polling = layout.polling
            // Each thread sets up its own stages (buffers included) when it starts.
            if layout.threadsPerQueue == 1 {
                workers.append(WorkerThread(name: "tun⇄udp\(suffix)") {
                    var driver = PipelineDriver(outboundStage(queue: index), inboundStage(queue: index), policy: polling)
                    driver.run(lifecycle)
                })
            } else {
                workers.append(WorkerThread(name: "tun→udp\(suffix)") {
                    var driver = PipelineDriver(outboundStage(queue: index), policy: polling)
                    driver.run(lifecycle)
                })
                workers.append(WorkerThread(name: "udp→tun\(suffix)") {
                    var driver = PipelineDriver(inboundStage(queue: index), policy: polling)
                    driver.run(lifecycle)
                })
            }
        }
        var unpinned: [SystemError] = []
        if let cpus = layout.cpus, !cpus.isEmpty {
            for (index, worker) in workers.enumerated() {
                do throws(SystemError) { try worker.pin(to: cpus[index % cpus.count]) } catch { unpinned.append(error) }
            }
        }
        return Started(workers: workers, unpinned: unpinned)
    }
}
