import KernelIO
import Synchronization
import WireFormat

/// When a duplex worker lends its second stage to a helper thread, and when the helper gives it back.
/// Both directions on one thread is the low-latency layout (a reply leaves on the thread that
/// forwarded the request, awake already); a thread per direction is the high-throughput one. The
/// adaptive layout runs the first while traffic is light and the second under load.
public struct SplitPolicy: Sendable, Equatable {
    /// The duplex thread judges its load over windows this long.
    public var splitWindowNanoseconds: UInt64
    /// It lends the second stage after a window in which it was busy at least this share (per
    /// mille) and the second stage moved packets.
    public var splitAtPerMille: UInt64
    /// The helper judges the load over windows this long (longer: a split is not undone by a pause).
    public var mergeWindowNanoseconds: UInt64
    /// It gives the stage back after a window in which both threads together were busy less than
    /// this share (per mille): one thread can then carry both directions with room to spare.
    public var mergeBelowPerMille: UInt64
    /// A split this soon after the last merge shows the merge was wrong (the load had not fallen):
    /// the next merge then waits for twice as many light windows in a row, up to
    /// `maximumLightWindows`. A later split starts again from one.
    public var flapNanoseconds: UInt64
    public var maximumLightWindows: Int

    public init(splitWindowNanoseconds: UInt64 = 10_000_000, splitAtPerMille: UInt64 = 700,
                mergeWindowNanoseconds: UInt64 = 100_000_000, mergeBelowPerMille: UInt64 = 500,
                flapNanoseconds: UInt64 = 1_000_000_000, maximumLightWindows: Int = 64) {
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

/// A pipeline stage lent between a duplex worker and its helper thread. Exactly one of the two
/// holds it at any time; only the holder touches the stage. Handing it over is a releasing store
/// of the holder (the giver is done with the stage before it) and an acquiring load by the taker,
/// then a ring of the taker's doorbell so it stops sleeping on descriptors that are not its own.
public final class LentStage<Stage: PipelineStage>: @unchecked Sendable {
    public enum Holder: UInt8, Sendable { case duplex = 0, helper = 1 }

    private var stage: Stage
    private let holder = Atomic<UInt8>(Holder.duplex.rawValue)
    /// Busy nanoseconds of the duplex thread, added once per window, for the helper's judgement.
    private let duplexBusy = Atomic<UInt64>(0)
    private let leftThreads = Atomic<Int>(0)
    private let handOverCount = Atomic<Int>(0)
    /// Light windows in a row the helper needs before it gives the stage back (set in `lend`), and
    /// when it last did (set in `giveBack`). Only the holder touches them: the hand-over's releasing
    /// store and acquiring load order each write before the other thread's reads.
    private(set) var lightWindowsToMerge = 1
    private var lastGiveBack: UInt64?
    let duplexDoorbell: Waker
    let helperDoorbell: Waker
    public let readinessDescriptor: Int32
    public let policy: SplitPolicy

    public init(_ stage: Stage, policy: SplitPolicy = SplitPolicy()) throws(SystemError) {
        self.stage = stage
        self.policy = policy
        readinessDescriptor = stage.readinessDescriptor
        duplexDoorbell = try Waker()
        helperDoorbell = try Waker()
    }

    public func isHeld(by who: Holder) -> Bool { holder.load(ordering: .acquiring) == who.rawValue }

    /// How many times the stage changed hands (splits and merges).
    public var handOvers: Int { handOverCount.load(ordering: .relaxed) }

    /// Only by the holder.
    func pump(_ lifecycle: Lifecycle) -> Int? { stage.pump(lifecycle) }
    func wentQuiet() { stage.wentQuiet() }

    /// Only by the duplex thread, holding the stage: lends it to the helper, asking for more light
    /// windows before the give-back when the last one came too soon (`SplitPolicy`).
    func lend(at now: UInt64) {
        lightWindowsToMerge = policy.lightWindowsToMerge(previous: lightWindowsToMerge,
                                                         sinceMerge: lastGiveBack.map { now &- $0 })
        hand(to: .helper)
    }

    /// Only by the helper, holding the stage: gives it back to the duplex thread.
    func giveBack(at now: UInt64) {
        lastGiveBack = now
        hand(to: .duplex)
    }

    /// Only by the holder: it stops touching the stage before the store.
    private func hand(to taker: Holder) {
        holder.store(taker.rawValue, ordering: .releasing)
        handOverCount.add(1, ordering: .relaxed)
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

/// The adaptive layout's duplex thread: it moves `first` always and the lent stage while it holds
/// it, and lends it to the helper after a busy window (`SplitPolicy`). With the stage lent it leaves
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
        var lentMovedInWindow = false
        var lastTraffic: UInt64 = 0
        defer {
            first.finish()
            lent.leave()
        }
        while !lifecycle.isStopping {
            var holds = lent.isHeld(by: .duplex)
            guard let firstMoved = first.pump(lifecycle) else { return }
            var lentMoved = 0
            if holds {
                guard let moved = lent.pump(lifecycle) else { return }
                lentMoved = moved
            }
            let moved = firstMoved + lentMoved
            let now = Clock.monotonicNanoseconds()
            if moved > 0 {
                window.moved(at: now)
                lastTraffic = now
                if lentMoved > 0 { lentMovedInWindow = true }
            } else {
                window.ranDry(at: now)
            }
            if let (busy, elapsed) = window.close(at: now) {
                lent.addDuplexBusy(busy)
                if holds, lentMovedInWindow, busy * 1000 >= lent.policy.splitAtPerMille * elapsed {
                    lent.lend(at: now)
                    holds = false
                }
                lentMovedInWindow = false
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

/// The adaptive layout's helper thread: asleep on its doorbell until the duplex thread lends it the
/// stage, then it moves the stage alone, and gives it back after a window in which neither thread
/// moved a packet, or after as many windows in a row in which both together were lightly busy as
/// the duplex thread asked for when it lent the stage (`SplitPolicy`).
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
        // Wake at least once a window while holding the stage, so an idle stage goes back.
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
            var lightWindows = 0
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
                    let both = busy &+ (duplexBusy &- duplexBusyAtStart)
                    duplexBusyAtStart = duplexBusy
                    lightWindows = both * 1000 < lent.policy.mergeBelowPerMille * elapsed ? lightWindows + 1 : 0
                    if both == 0 || lightWindows >= lent.lightWindowsToMerge {
                        lent.giveBack(at: now)
                        break
                    }
                }
                if moved > 0 || polling.yieldsInBusyPollWindow(now: now, lastTraffic: lastTraffic) { continue }
                if !working.wait(timeoutMilliseconds: windowMilliseconds) { lent.wentQuiet() }
            }
        }
    }
}
