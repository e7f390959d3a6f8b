import KernelIO
import Synchronization
import WireFormat

/// When the `--threads auto` layout splits (the duplex thread's second stage, the inbound one, moves
/// to a helper thread) and when it merges (the stage moves back). Both directions on one thread is
/// the low-latency layout (a reply leaves on the thread that forwarded the request, awake already);
/// a thread per direction is the high-throughput one. The auto layout runs the first while traffic
/// is light and the second under load. `AutoThreads` makes the decisions.
public struct SplitPolicy: Sendable, Equatable {
    /// The duplex thread judges its load over windows this long.
    public var splitWindowNanoseconds: UInt64
    /// It splits after a window in which it was busy at least this share (per mille) and the
    /// second stage moved packets.
    public var splitAtPerMille: UInt64
    /// The helper judges the load over windows this long (longer: a split is not undone by a pause).
    public var mergeWindowNanoseconds: UInt64
    /// It merges after a window in which both threads together were busy less than this share
    /// (per mille): one thread can then carry both directions with room to spare.
    public var mergeBelowPerMille: UInt64
    /// A split this soon after the last merge shows the merge was wrong (the load had not fallen):
    /// the next merge then waits for twice as many light windows in a row, up to
    /// `maximumLightWindows`. A later split starts again from one.
    public var flapNanoseconds: UInt64
    public var maximumLightWindows: Int

    public init(
        splitWindowNanoseconds: UInt64 = 10_000_000, splitAtPerMille: UInt64 = 700,
        mergeWindowNanoseconds: UInt64 = 100_000_000, mergeBelowPerMille: UInt64 = 500,
        flapNanoseconds: UInt64 = 1_000_000_000, maximumLightWindows: Int = 64
    ) {
        precondition(mergeBelowPerMille < splitAtPerMille, "merging must need less load than splitting")
        precondition(maximumLightWindows >= 1)
        self.splitWindowNanoseconds = splitWindowNanoseconds
        self.splitAtPerMille = splitAtPerMille
        self.mergeWindowNanoseconds = mergeWindowNanoseconds
        self.mergeBelowPerMille = mergeBelowPerMille
        self.flapNanoseconds = flapNanoseconds
        self.maximumLightWindows = maximumLightWindows
    }

    /// The light windows in a row the next merge needs, for a split `sinceMerge` after the last
    /// merge (nil: the first split) when the last merge needed `previous`.
    public func lightWindowsToMerge(previous: Int, sinceMerge: UInt64?) -> Int {
        guard let sinceMerge, sinceMerge < flapNanoseconds else { return 1 }
        return min(maximumLightWindows, 2 * max(1, previous))
    }
}

/// A thread's busy time, judged over fixed windows: busy from a batch that moved packets until a
/// round of the stages found nothing (the thread then sleeps or spins).
struct BusyWindow {
    let length: UInt64
    private var start: UInt64
    private var busy: UInt64 = 0
    private var busySince: UInt64?

    init(length: UInt64, now: UInt64) {
        self.length = length
        start = now
    }

    mutating func moved(at now: UInt64) {
        if busySince == nil { busySince = now }
    }

    mutating func ranDry(at now: UInt64) {
        guard let since = busySince else { return }
        busy &+= now &- since
        busySince = nil
    }

    /// When the window has ended by `now`: the busy time in it and its length; the next one starts.
    mutating func close(at now: UInt64) -> (busy: UInt64, elapsed: UInt64)? {
        let elapsed = now &- start
        guard elapsed >= length else { return nil }
        var total = busy
        if let since = busySince {
            total &+= now &- since
            busySince = now
        }
        start = now
        busy = 0
        return (total, elapsed)
    }
}

/// The `--threads auto` layout's decisions, a state machine with no clock, no threads and no
/// locks: the two threads measure their windows (`BusyWindow`), feed each one in as it ends, and
/// split or merge when it says so. It starts merged (both directions on the duplex thread). Only
/// the thread holding the inbound stage feeds it, the duplex thread while merged and the helper
/// while split, so it moves between the threads with the stage (`LentStage`).
struct AutoThreads: Sendable, Equatable {
    enum Decision: Sendable, Equatable {
        /// Keep the layout as it is.
        case stay
        /// Move the inbound stage from the duplex thread to the helper.
        case split
        /// Move it back to the duplex thread.
        case merge
    }

    let policy: SplitPolicy
    /// Whether the helper holds the inbound stage.
    private(set) var isSplit = false
    /// The light merge windows in a row the next merge needs, set at each split.
    private(set) var lightWindowsToMerge = 1
    /// The light merge windows in a row so far since the split.
    private(set) var lightWindows = 0
    /// When the last merge was (nil: none yet).
    private(set) var lastMerge: UInt64?

    init(policy: SplitPolicy) { self.policy = policy }

    /// The duplex thread's split window ended at `now`: it was busy `busy` of its `elapsed`
    /// nanoseconds, and the inbound stage moved packets in it or not. Merged, it splits when the
    /// inbound stage moved packets and the thread was busy at least `splitAtPerMille`; a split within
    /// `flapNanoseconds` of the last merge doubles the light windows the next merge needs.
    mutating func duplexWindowEnded(busy: UInt64, elapsed: UInt64, inboundMoved: Bool, at now: UInt64) -> Decision {
        guard !isSplit, inboundMoved, busy * 1000 >= policy.splitAtPerMille * elapsed else { return .stay }
        lightWindowsToMerge = policy.lightWindowsToMerge(
            previous: lightWindowsToMerge,
            sinceMerge: lastMerge.map { now &- $0 })
        lightWindows = 0
        isSplit = true
        return .split
    }

    /// The helper's merge window ended at `now`: the helper was busy `helperBusy` of its `elapsed`
    /// nanoseconds and the duplex thread `duplexBusy` meanwhile. Split, it merges at once after a
    /// window in which neither thread was busy at all, else after `lightWindowsToMerge` windows in a
    /// row in which both together were busy less than `mergeBelowPerMille`.
    mutating func helperWindowEnded(helperBusy: UInt64, duplexBusy: UInt64, elapsed: UInt64, at now: UInt64) -> Decision {
        guard isSplit else { return .stay }
        let both = helperBusy &+ duplexBusy
        lightWindows = both * 1000 < policy.mergeBelowPerMille * elapsed ? lightWindows + 1 : 0
        guard both == 0 || lightWindows >= lightWindowsToMerge else { return .stay }
        lastMerge = now
        lightWindows = 0
        isSplit = false
        return .merge
    }
}

/// The auto layout's inbound stage, shared by the duplex thread and its helper, with the
/// `AutoThreads` state that decides which of the two holds it. Exactly one holds it at any time;
/// only the holder touches the stage and the state. A split or a merge moves it: a releasing store
/// of the holder (the giver is done with the stage and the state before it) and an acquiring load
/// by the taker, then a ring of the taker's doorbell so it stops sleeping on descriptors that are
/// not its own.
public final class LentStage<Stage: PipelineStage>: @unchecked Sendable {
    public enum Holder: UInt8, Sendable { case duplex = 0, helper = 1 }

    private var stage: Stage
    /// Only by the holder: it feeds in its windows and acts on the decisions (`split`, `merge`).
    var auto: AutoThreads
    private let holder = Atomic<UInt8>(Holder.duplex.rawValue)
    /// Busy nanoseconds of the duplex thread, added once per window, for the helper's judgement.
    private let duplexBusy = Atomic<UInt64>(0)
    private let leftThreads = Atomic<Int>(0)
    private let moves = Atomic<Int>(0)
    /// `auto.lightWindowsToMerge` as of the last split, for other threads (tests) to read.
    private let lightWindowsToMergeAtSplit = Atomic<Int>(1)
    let duplexDoorbell: Waker
    let helperDoorbell: Waker
    public let readinessDescriptor: Int32
    public let policy: SplitPolicy

    public init(_ stage: Stage, policy: SplitPolicy = SplitPolicy()) throws(SystemError) {
        self.stage = stage
        self.policy = policy
        auto = AutoThreads(policy: policy)
        readinessDescriptor = stage.readinessDescriptor
        duplexDoorbell = try Waker()
        helperDoorbell = try Waker()
    }

    public func isHeld(by who: Holder) -> Bool { holder.load(ordering: .acquiring) == who.rawValue }

    /// How many times the layout split or merged.
    public var splitsAndMerges: Int { moves.load(ordering: .relaxed) }

    /// The light windows in a row the last split's merge needs; any thread may read it.
    var lightWindowsToMerge: Int { lightWindowsToMergeAtSplit.load(ordering: .relaxed) }

    /// Only by the holder.
    func pump(_ lifecycle: Lifecycle) -> Int? { stage.pump(lifecycle) }
    func wentQuiet() { stage.wentQuiet() }

    /// Only by the duplex thread, holding the stage, when `auto` decided `.split`: moves it to the helper.
    func split() {
        assert(auto.isSplit, "a split that AutoThreads did not decide")
        lightWindowsToMergeAtSplit.store(auto.lightWindowsToMerge, ordering: .relaxed)
        move(to: .helper)
    }

    /// Only by the helper, holding the stage, when `auto` decided `.merge`: moves it to the duplex thread.
    func merge() {
        assert(!auto.isSplit, "a merge that AutoThreads did not decide")
        move(to: .duplex)
    }

    /// Only by the holder: it stops touching the stage and `auto` before the store.
    private func move(to taker: Holder) {
        holder.store(taker.rawValue, ordering: .releasing)
        moves.add(1, ordering: .relaxed)
        (taker == .helper ? helperDoorbell : duplexDoorbell).wake()
    }

    func addDuplexBusy(_ nanoseconds: UInt64) { duplexBusy.add(nanoseconds, ordering: .relaxed) }
    var duplexBusyTotal: UInt64 { duplexBusy.load(ordering: .relaxed) }

    /// Each of the two threads calls this once as it stops; the second runs the stage's `finish`,
    /// when neither touches the stage any more, whoever held it last.
    func leave() {
        if leftThreads.add(1, ordering: .acquiringAndReleasing).oldValue == 1 { stage.finish() }
    }
}

/// The auto layout's duplex thread: it moves `first` always and the lent stage while it holds it
/// (merged), feeds each split window to `AutoThreads` and splits when it says so. Split, it leaves
/// the stage's descriptor out of its waits and listens for its doorbell instead.
public struct LendingDriver<First: PipelineStage, Second: PipelineStage> {
    public var first: First
    public let lent: LentStage<Second>
    public let polling: PollingPolicy

    public init(_ first: First, lending lent: LentStage<Second>, polling: PollingPolicy) {
        self.first = first
        self.lent = lent
        self.polling = polling
    }

    public mutating func run(_ lifecycle: Lifecycle) {
        let readiness = PollSet(capacity: 3, waker: lifecycle.waker)
        readiness.add(first.readinessDescriptor)
        let lentPosition = readiness.add(lent.readinessDescriptor)!
        let doorbell = readiness.add(lent.duplexDoorbell)!
        var window = BusyWindow(length: lent.policy.splitWindowNanoseconds, now: Clock.monotonicNanoseconds())
        var inboundMovedInWindow = false
        var lastTraffic: UInt64 = 0
        defer {
            first.finish()
            lent.leave()
        }
        while !lifecycle.isStopping {
            var holds = lent.isHeld(by: .duplex)
            guard let firstMoved = first.pump(lifecycle) else { return }
            var inboundMoved = 0
            if holds {
                guard let moved = lent.pump(lifecycle) else { return }
                inboundMoved = moved
            }
            let moved = firstMoved + inboundMoved
            let now = Clock.monotonicNanoseconds()
            if moved > 0 {
                window.moved(at: now)
                lastTraffic = now
                if inboundMoved > 0 { inboundMovedInWindow = true }
            } else {
                window.ranDry(at: now)
            }
            if let (busy, elapsed) = window.close(at: now) {
                lent.addDuplexBusy(busy)
                // Only the holder feeds `auto`; split, the helper does.
                if holds,
                    lent.auto.duplexWindowEnded(
                        busy: busy, elapsed: elapsed, inboundMoved: inboundMovedInWindow,
                        at: now) == .split
                {
                    lent.split()
                    holds = false
                }
                inboundMovedInWindow = false
            }
            if moved > 0 || polling.yieldsInBusyPollWindow(now: now, lastTraffic: lastTraffic) { continue }
            readiness.watch(lentPosition, holds)
            if !readiness.wait(timeoutMilliseconds: PollingPolicy.sleepMilliseconds) {
                first.wentQuiet()
                if holds { lent.wentQuiet() }
            }
            if readiness.isReady(doorbell) { lent.duplexDoorbell.reset() }
        }
    }
}

/// The auto layout's helper thread: asleep on its doorbell until a split moves the stage to it;
/// then it moves the stage alone, feeds each merge window (its busy time and the duplex thread's)
/// to `AutoThreads` and merges when it says so.
public struct HelperDriver<Stage: PipelineStage> {
    public let lent: LentStage<Stage>
    public let polling: PollingPolicy

    public init(helping lent: LentStage<Stage>, polling: PollingPolicy) {
        self.lent = lent
        self.polling = polling
    }

    public func run(_ lifecycle: Lifecycle) {
        let idle = PollSet(capacity: 1, waker: lifecycle.waker)
        let doorbell = idle.add(lent.helperDoorbell)!
        let working = PollSet(capacity: 1, waker: lifecycle.waker)
        working.add(lent.readinessDescriptor)
        // Wake at least once a window while holding the stage, so an idle stage merges.
        let windowMilliseconds = Int32(clamping: max(1, lent.policy.mergeWindowNanoseconds / 1_000_000))
        defer { lent.leave() }
        while !lifecycle.isStopping {
            guard lent.isHeld(by: .helper) else {
                idle.wait(timeoutMilliseconds: PollingPolicy.sleepMilliseconds)
                if idle.isReady(doorbell) { lent.helperDoorbell.reset() }
                continue
            }
            var window = BusyWindow(length: lent.policy.mergeWindowNanoseconds, now: Clock.monotonicNanoseconds())
            var duplexBusyAtStart = lent.duplexBusyTotal
            var lastTraffic: UInt64 = 0
            while !lifecycle.isStopping {
                guard let moved = lent.pump(lifecycle) else { return }
                let now = Clock.monotonicNanoseconds()
                if moved > 0 {
                    window.moved(at: now)
                    lastTraffic = now
                } else {
                    window.ranDry(at: now)
                }
                if let (busy, elapsed) = window.close(at: now) {
                    let duplexBusy = lent.duplexBusyTotal
                    let duplexBusyInWindow = duplexBusy &- duplexBusyAtStart
                    duplexBusyAtStart = duplexBusy
                    if lent.auto.helperWindowEnded(
                        helperBusy: busy, duplexBusy: duplexBusyInWindow, elapsed: elapsed,
                        at: now) == .merge
                    {
                        lent.merge()
                        break
                    }
                }
                if moved > 0 || polling.yieldsInBusyPollWindow(now: now, lastTraffic: lastTraffic) { continue }
                if !working.wait(timeoutMilliseconds: windowMilliseconds) { lent.wentQuiet() }
            }
        }
    }
}
