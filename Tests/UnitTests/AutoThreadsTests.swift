import Testing

@testable import Engine

/// `AutoThreads` without clocks or threads: each test feeds it the windows the duplex thread and the
/// helper would measure, at made-up times, and checks what it decides.
@Suite("Auto threads: when the layout splits and merges")
struct AutoThreadsTests {
    /// The default policy: 10 ms split windows (split at 70 % busy), 100 ms merge windows (light
    /// below 50 %), a split within 1 s of the last merge doubles the next merge's light windows, up to 64.
    private static let policy = SplitPolicy()
    private static let ms: UInt64 = 1_000_000

    /// A split window in which the duplex thread was busy `perMille` and the inbound stage moved packets.
    private static func duplex(
        _ auto: inout AutoThreads, busyPerMille perMille: UInt64, inboundMoved: Bool = true,
        at now: UInt64
    ) -> AutoThreads.Decision {
        auto.duplexWindowEnded(busy: perMille * 10 * ms / 1000, elapsed: 10 * ms, inboundMoved: inboundMoved, at: now)
    }

    /// A merge window in which the helper was busy `helper` and the duplex thread `duplex` per mille of it.
    private static func helper(
        _ auto: inout AutoThreads, helper: UInt64, duplex: UInt64 = 0,
        at now: UInt64
    ) -> AutoThreads.Decision {
        auto.helperWindowEnded(
            helperBusy: helper * 100 * ms / 1000, duplexBusy: duplex * 100 * ms / 1000,
            elapsed: 100 * ms, at: now)
    }

    /// A split at `now` (asserted), then light merge windows until it merges: how many it took.
    private static func lightWindowsUntilMerge(_ auto: inout AutoThreads, splitAt now: UInt64) -> Int {
        #expect(duplex(&auto, busyPerMille: 900, at: now) == .split)
        var windows = 0
        var decision = AutoThreads.Decision.stay
        while decision == .stay, windows < 1000 {
            windows += 1
            decision = helper(&auto, helper: 200, duplex: 100, at: now + UInt64(windows) * 100 * ms)
        }
        #expect(decision == .merge && !auto.isSplit)
        return windows
    }

    @Test("it starts merged, and a busy split window in which the inbound stage moved packets splits")
    func splitsUnderLoad() {
        var auto = AutoThreads(policy: Self.policy)
        #expect(!auto.isSplit)
        #expect(Self.duplex(&auto, busyPerMille: 100, at: 10 * Self.ms) == .stay)
        #expect(Self.duplex(&auto, busyPerMille: 950, at: 20 * Self.ms) == .split)
        #expect(auto.isSplit && auto.lightWindowsToMerge == 1)  // the first split: one light window merges
    }

    @Test("the split threshold: busy at least 70 % of the window, whatever its length")
    func splitThreshold() {
        var auto = AutoThreads(policy: Self.policy)
        #expect(auto.duplexWindowEnded(busy: 6_999_999, elapsed: 10_000_000, inboundMoved: true, at: 1) == .stay)
        #expect(auto.duplexWindowEnded(busy: 7_699_999, elapsed: 11_000_000, inboundMoved: true, at: 2) == .stay)
        #expect(auto.duplexWindowEnded(busy: 7_000_000, elapsed: 10_000_000, inboundMoved: true, at: 3) == .split)
    }

    @Test("a busy duplex thread whose inbound stage moved nothing stays merged: a second thread would not help")
    func busyOutboundOnlyStays() {
        var auto = AutoThreads(policy: Self.policy)
        #expect(Self.duplex(&auto, busyPerMille: 1000, inboundMoved: false, at: 10 * Self.ms) == .stay)
        #expect(!auto.isSplit)
    }

    @Test("each thread's windows count only in its own layout: split windows while split, merge windows while merged")
    func windowsOutOfTurnStay() {
        var auto = AutoThreads(policy: Self.policy)
        #expect(Self.helper(&auto, helper: 0, at: 100 * Self.ms) == .stay)  // merged: no merge to make
        #expect(!auto.isSplit && auto.lastMerge == nil)
        #expect(Self.duplex(&auto, busyPerMille: 900, at: 200 * Self.ms) == .split)
        #expect(Self.duplex(&auto, busyPerMille: 1000, at: 210 * Self.ms) == .stay)  // split already
        #expect(auto.isSplit && auto.lightWindowsToMerge == 1)
    }

    @Test("split, it merges after a window in which both threads together were busy less than half of it")
    func mergesWhenLight() {
        var auto = AutoThreads(policy: Self.policy)
        #expect(Self.duplex(&auto, busyPerMille: 900, at: 10 * Self.ms) == .split)
        #expect(Self.helper(&auto, helper: 400, duplex: 300, at: 110 * Self.ms) == .stay)  // 70 % together
        #expect(Self.helper(&auto, helper: 250, duplex: 250, at: 210 * Self.ms) == .stay)  // 50 %: not light
        #expect(Self.helper(&auto, helper: 300, duplex: 199, at: 310 * Self.ms) == .merge)
        #expect(!auto.isSplit && auto.lastMerge == 310 * Self.ms)
    }

    @Test("a window in which neither thread was busy merges at once, however many light windows the merge needs")
    func idleMergesAtOnce() {
        var auto = AutoThreads(policy: Self.policy)
        // Flap to the cap: each split 10 ms after the merge before it.
        var now: UInt64 = 0
        while auto.lightWindowsToMerge < 64 {
            now += 10 * Self.ms
            #expect(Self.duplex(&auto, busyPerMille: 900, at: now) == .split)
            now += 100 * Self.ms
            #expect(Self.helper(&auto, helper: 0, at: now) == .merge)
        }
        now += 10 * Self.ms
        #expect(Self.duplex(&auto, busyPerMille: 900, at: now) == .split)
        #expect(auto.lightWindowsToMerge == 64)
        #expect(Self.helper(&auto, helper: 100, at: now + 100 * Self.ms) == .stay)  // light, 1 of 64
        #expect(Self.helper(&auto, helper: 0, duplex: 0, at: now + 200 * Self.ms) == .merge)
    }

    @Test("a split within a second of the last merge doubles the light windows the next merge needs, up to 64 × 100 ms")
    func dampingAfterARecentMerge() {
        var auto = AutoThreads(policy: Self.policy)
        var now: UInt64 = 0
        var needed: [Int] = []
        for _ in 0..<9 {
            now += 30 * Self.ms  // load again 30 ms after the merge
            let windows = Self.lightWindowsUntilMerge(&auto, splitAt: now)
            #expect(windows == auto.lightWindowsToMerge)
            needed.append(windows)
            now += UInt64(windows) * 100 * Self.ms
        }
        #expect(needed == [1, 2, 4, 8, 16, 32, 64, 64, 64])
        // 64 light windows of 100 ms: 6.4 s of light load before the last merge.
        #expect(auto.lastMerge == now)
    }

    @Test("the flap window: a split 999,999,999 ns after the merge still doubles, one at 1 s starts again from one")
    func flapBoundary() {
        var auto = AutoThreads(policy: Self.policy)
        #expect(Self.lightWindowsUntilMerge(&auto, splitAt: 0) == 1)
        let firstMerge = auto.lastMerge!
        #expect(Self.lightWindowsUntilMerge(&auto, splitAt: firstMerge + 999_999_999) == 2)
        let secondMerge = auto.lastMerge!
        #expect(Self.lightWindowsUntilMerge(&auto, splitAt: secondMerge + 999_999_999) == 4)
        // The load really had fallen: a split a second or more after the merge needs one light window.
        #expect(Self.lightWindowsUntilMerge(&auto, splitAt: auto.lastMerge! + 1_000_000_000) == 1)
    }

    @Test("the light windows must come in a row: a busy window starts the count again")
    func lightWindowsInARow() {
        var auto = AutoThreads(policy: Self.policy)
        #expect(Self.lightWindowsUntilMerge(&auto, splitAt: 0) == 1)
        #expect(Self.lightWindowsUntilMerge(&auto, splitAt: auto.lastMerge! + 10 * Self.ms) == 2)
        var now = auto.lastMerge! + 10 * Self.ms
        #expect(Self.duplex(&auto, busyPerMille: 900, at: now) == .split)
        #expect(auto.lightWindowsToMerge == 4)
        for (helperBusy, expected) in [
            (UInt64(100), AutoThreads.Decision.stay), (100, .stay), (100, .stay),
            (800, .stay),  // busy: three light windows lost
            (100, .stay), (100, .stay), (100, .stay), (100, .merge)
        ] {
            now += 100 * Self.ms
            #expect(Self.helper(&auto, helper: helperBusy, duplex: 50, at: now) == expected)
        }
    }

    @Test("the duplex thread's busy time counts towards the merge: a light helper beside a busy duplex thread stays split")
    func duplexLoadKeepsTheSplit() {
        var auto = AutoThreads(policy: Self.policy)
        #expect(Self.duplex(&auto, busyPerMille: 900, at: 10 * Self.ms) == .split)
        #expect(Self.helper(&auto, helper: 50, duplex: 900, at: 110 * Self.ms) == .stay)
        #expect(Self.helper(&auto, helper: 0, duplex: 450, at: 210 * Self.ms) == .merge)  // 45 %
    }

    @Test("the policy's own numbers drive it: a shorter flap window and a lower cap")
    func customPolicy() {
        let policy = SplitPolicy(
            splitWindowNanoseconds: 5_000_000, splitAtPerMille: 600, mergeWindowNanoseconds: 50_000_000,
            mergeBelowPerMille: 300, flapNanoseconds: 200_000_000, maximumLightWindows: 2)
        var auto = AutoThreads(policy: policy)
        #expect(auto.duplexWindowEnded(busy: 3_000_000, elapsed: 5_000_000, inboundMoved: true, at: 0) == .split)  // 60 %
        #expect(auto.helperWindowEnded(helperBusy: 15_000_000, duplexBusy: 0, elapsed: 50_000_000, at: 50 * Self.ms) == .stay)  // 30 %
        #expect(auto.helperWindowEnded(helperBusy: 14_999_999, duplexBusy: 0, elapsed: 50_000_000, at: 100 * Self.ms) == .merge)
        for expected in [2, 2] {  // 150 ms after each merge: a flap; capped at 2
            #expect(
                auto.duplexWindowEnded(
                    busy: 5_000_000, elapsed: 5_000_000, inboundMoved: true,
                    at: auto.lastMerge! + 150 * Self.ms) == .split)
            #expect(auto.lightWindowsToMerge == expected)
            #expect(
                auto.helperWindowEnded(helperBusy: 0, duplexBusy: 0, elapsed: 50_000_000, at: auto.lastMerge! + 200 * Self.ms) == .merge)
        }
        // 200 ms after the merge is outside this policy's flap window.
        #expect(
            auto.duplexWindowEnded(
                busy: 5_000_000, elapsed: 5_000_000, inboundMoved: true,
                at: auto.lastMerge! + 200 * Self.ms) == .split)
        #expect(auto.lightWindowsToMerge == 1)
    }
}
