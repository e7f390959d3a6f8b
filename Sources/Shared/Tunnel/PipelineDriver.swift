import Glibc

/// How a worker thread waits for packets.
public struct PollingPolicy: Sendable, Equatable {
    /// After the last packet, keep polling without sleeping for this long (0: sleep at once).
    /// A packet that arrives inside the window is taken without a thread wake-up, which is most of
    /// a userspace tunnel's added latency; the price is a busy core for the window after each packet.
    public var busyPollNanoseconds: UInt64

    public init(busyPollNanoseconds: UInt64 = 0) { self.busyPollNanoseconds = busyPollNanoseconds }

    /// How long a sleeping worker waits before re-checking the stop flag (the waker normally ends it first).
    static var sleepMilliseconds: Int32 { 500 }
}

/// Runs stages on the calling thread until the lifecycle stops: it takes a batch from every ready
/// stage in turn, spins for the busy-poll window after traffic, and then sleeps in one poll over
/// all their descriptors. A duplex worker (both directions on one thread) lets a reply leave on the
/// thread that just forwarded the request, while it is still awake.
public struct PipelineDriver {
    public let stages: [any PipelineStage]
    public let policy: PollingPolicy

    public init(stages: [any PipelineStage], policy: PollingPolicy) {
        precondition(!stages.isEmpty, "a driver needs at least one stage")
        self.stages = stages
        self.policy = policy
    }

    public func run(_ lifecycle: Lifecycle) {
        let readiness = ReadinessSet(descriptors: stages.map(\.readinessDescriptor), waker: lifecycle.waker)
        var lastTraffic: UInt64 = 0  // no window before the first packet
        while !lifecycle.isStopping {
            var moved = 0
            for stage in stages {
                guard let count = stage.pump(lifecycle) else { return }
                moved += count
            }
            if policy.busyPollNanoseconds > 0 {
                let now = Clock.monotonicNanoseconds()
                if moved > 0 { lastTraffic = now; continue }
                if now &- lastTraffic < policy.busyPollNanoseconds {
                    // Let whatever else is runnable here (the kernel's forwarding work, the peer we
                    // wait for) have the core: spinning must not delay the very packet it waits for.
                    sched_yield()
                    continue
                }
            } else if moved > 0 {
                continue
            }
            readiness.wait(timeoutMilliseconds: PollingPolicy.sleepMilliseconds)
        }
    }
}
