import Glibc
import KernelIO
import WireFormat

/// One direction of the data plane on one thread (`InboundStage`, `OutboundStage`), moved a batch at
/// a time so that a thread can drive one direction or both, polling their descriptors together.
public protocol PipelineStage {
    /// Readable when `pump` has work (-1: never; `poll` ignores it).
    var readinessDescriptor: Int32 { get }

    /// Moves at most one batch of what is ready now, without waiting. Returns the packets or
    /// datagrams taken in (0 when nothing was ready), or nil after a fault ended the process
    /// (already reported through `lifecycle.fail`).
    mutating func pump(_ lifecycle: Lifecycle) -> Int?

    /// Runs once when the worker stops, before the final report (passes on the counts it still holds).
    mutating func finish()

    /// Runs when a wait for work timed out: nothing arrived on either stage for a while.
    mutating func wentQuiet()
}

extension PipelineStage {
    public mutating func finish() {}
    public mutating func wentQuiet() {}
}

/// The second stage of a thread that drives only one direction.
public struct NoStage: PipelineStage {
    public init() {}
    public var readinessDescriptor: Int32 { -1 }
    public mutating func pump(_ lifecycle: Lifecycle) -> Int? { 0 }
}

/// How a worker thread waits for packets.
public struct PollingPolicy: Sendable, Equatable {
    /// After the last packet, keep polling without sleeping for this long (0: sleep at once).
    /// A packet that arrives inside the window is taken without a thread wake-up, which is most of
    /// a userspace tunnel's added latency; the price is a busy core for the window after each packet.
    public var busyPollNanoseconds: UInt64

    public init(busyPollNanoseconds: UInt64 = 0) { self.busyPollNanoseconds = busyPollNanoseconds }

    /// How long a sleeping worker waits before re-checking the stop flag (the waker normally ends it first).
    static var sleepMilliseconds: Int32 { 500 }

    /// After a round that moved nothing: when `now` is inside the busy-poll window after the last
    /// packet (at `lastTraffic`), yields the core (sched_yield) and returns true, and the caller polls
    /// again at once rather than sleep; otherwise returns false at once. The yield lets whatever else
    /// is runnable here (the kernel's forwarding work, the peer we wait for) have the core: spinning
    /// must not delay the very packet it waits for.
    func yieldsInBusyPollWindow(now: UInt64, lastTraffic: UInt64) -> Bool {
        guard busyPollNanoseconds > 0, now &- lastTraffic < busyPollNanoseconds else { return false }
        sched_yield()
        return true
    }
}

/// Runs one or two stages on the calling thread until the lifecycle stops: it takes a batch from
/// every ready stage in turn, spins for the busy-poll window after traffic, and then sleeps in one
/// poll over all their descriptors. A duplex worker (both directions on one thread) lets a reply
/// leave on the thread that just forwarded the request, while it is still awake.
/// Generic over its stages, which the engine instantiates with concrete types, so the compiler
/// specialises the whole loop without a hand-kept list.
public struct PipelineDriver<First: PipelineStage, Second: PipelineStage> {
    public var first: First
    public var second: Second
    public let policy: PollingPolicy

    public init(_ first: First, _ second: Second, policy: PollingPolicy) {
        self.first = first
        self.second = second
        self.policy = policy
    }

    public mutating func run(_ lifecycle: Lifecycle) {
        let readiness = PollSet(capacity: 2, waker: lifecycle.waker)
        readiness.add(first.readinessDescriptor)
        readiness.add(second.readinessDescriptor)
        var lastTraffic: UInt64 = 0  // no window before the first packet
        defer {
            first.finish()
            second.finish()
        }
        while !lifecycle.isStopping {
            guard let firstMoved = first.pump(lifecycle), let secondMoved = second.pump(lifecycle) else { return }
            let moved = firstMoved + secondMoved
            // The clock only matters to busy polling.
            let now = policy.busyPollNanoseconds > 0 ? Clock.monotonicNanoseconds() : 0
            if moved > 0 { lastTraffic = now; continue }
            if policy.yieldsInBusyPollWindow(now: now, lastTraffic: lastTraffic) { continue }
            if !readiness.wait(timeoutMilliseconds: PollingPolicy.sleepMilliseconds) {
                first.wentQuiet()
                second.wentQuiet()
            }
        }
    }
}

extension PipelineDriver where Second == NoStage {
    public init(_ only: First, policy: PollingPolicy) { self.init(only, NoStage(), policy: policy) }
}
