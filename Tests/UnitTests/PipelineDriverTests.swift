import Glibc
import Synchronization
import Testing

@testable import Engine
@testable import KernelIO
@testable import WireFormat

/// A stage fed through a pipe: each byte written is one "packet".
private final class PipeStage: PipelineStage, @unchecked Sendable {
    let readEnd: Int32
    let writeEnd: Int32
    let taken = Atomic<Int>(0)
    /// Times the driver asked this stage for packets, data or not: a spinning driver asks thousands of
    /// times a second, a sleeping one only when woken.
    let pumps = Atomic<Int>(0)
    let failAfter: Int?
    /// Time each pump that found packets spends working (a spin), to make a thread busy.
    let workNanoseconds: UInt64
    let finishes = Atomic<Int>(0)
    /// Set while a pump runs: two threads inside at once would be a broken split or merge.
    private let pumping = Atomic<Bool>(false)
    let overlappingPumps = Atomic<Int>(0)
    /// The threads that pumped this stage and found packets.
    let pumpers = Locked<Set<UInt>>([])

    init(failAfter: Int? = nil, workNanoseconds: UInt64 = 0) {
        self.workNanoseconds = workNanoseconds
        var fds: (Int32, Int32) = (-1, -1)
        withUnsafeMutablePointer(to: &fds) { $0.withMemoryRebound(to: Int32.self, capacity: 2) { _ = pipe($0) } }
        (readEnd, writeEnd) = fds
        _ = fcntl(readEnd, F_SETFL, O_NONBLOCK)
        self.failAfter = failAfter
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }

    func feed(_ count: Int) {
        let bytes = [UInt8](repeating: 1, count: count)
        #expect(write(writeEnd, bytes, count) == count)
    }

    var readinessDescriptor: Int32 { readEnd }

    func pump(_ lifecycle: Lifecycle) -> Int? {
        pumps.add(1, ordering: .relaxed)
        if pumping.exchange(true, ordering: .acquiringAndReleasing) { overlappingPumps.add(1, ordering: .relaxed) }
        defer { pumping.store(false, ordering: .releasing) }
        var buffer = [UInt8](repeating: 0, count: 16)
        let count = read(readEnd, &buffer, 16)
        guard count > 0 else { return 0 }
        pumpers.withLock { _ = $0.insert(UInt(bitPattern: Int(pthread_self()))) }
        if workNanoseconds > 0 {
            let until = Clock.monotonicNanoseconds() + workNanoseconds
            while Clock.monotonicNanoseconds() < until {}
        }
        let total = taken.add(count, ordering: .relaxed).newValue
        if let failAfter, total >= failAfter {
            lifecycle.fail("stage failed after \(total)")
            return nil
        }
        return count
    }

    func finish() { finishes.add(1, ordering: .relaxed) }
}

@Suite("Pipeline driver: one or two directions per thread, sleeping or busy polling")
struct PipelineDriverTests {
    /// Runs the driver on a worker thread, feeds the stages, waits until they have taken `expected`,
    /// then stops and joins it.
    private func drive(_ stages: [PipeStage], policy: PollingPolicy, feed: [Int]) throws -> Lifecycle {
        let lifecycle = try Lifecycle()
        let boxed = UncheckedStages(stages: stages)
        let worker = WorkerThread(name: "driver-test") { Self.run(boxed.stages, policy: policy, lifecycle) }
        for (stage, count) in zip(stages, feed) { stage.feed(count) }
        let deadline = Clock.monotonicNanoseconds() + 5_000_000_000
        while zip(stages, feed).contains(where: { $0.taken.load(ordering: .relaxed) < $1 }), !lifecycle.isStopping,
            Clock.monotonicNanoseconds() < deadline
        {
            Clock.sleep(nanoseconds: 1_000_000)
        }
        lifecycle.stop()
        worker.join()
        return lifecycle
    }

    private struct UncheckedStages: @unchecked Sendable { let stages: [PipeStage] }

    /// A driver over one stage or two, as the engine lays out its threads.
    private static func run(_ stages: [PipeStage], policy: PollingPolicy, _ lifecycle: Lifecycle) {
        if stages.count == 1 {
            var driver = PipelineDriver(stages[0], policy: policy)
            driver.run(lifecycle)
        } else {
            var driver = PipelineDriver(stages[0], stages[1], policy: policy)
            driver.run(lifecycle)
        }
    }

    @Test(
        "every configuration drains every stage and stops when asked",
        arguments: [
            (1, UInt64(0)), (1, UInt64(2_000_000)), (2, UInt64(0)), (2, UInt64(2_000_000))
        ])
    func drains(stageCount: Int, busyPoll: UInt64) throws {
        let stages = (0..<stageCount).map { _ in PipeStage() }
        let feed = [100, 37].prefix(stageCount).map { $0 }
        let lifecycle = try drive(stages, policy: PollingPolicy(busyPollNanoseconds: busyPoll), feed: feed)
        for (stage, count) in zip(stages, feed) { #expect(stage.taken.load(ordering: .relaxed) == count) }
        #expect(lifecycle.fatalError == nil)
    }

    @Test("a stage's fault ends a duplex worker, and the fault is what the process reports")
    func faultEndsWorker() throws {
        let stages = [PipeStage(), PipeStage(failAfter: 5)]
        let lifecycle = try drive(stages, policy: PollingPolicy(), feed: [0, 5])
        #expect(lifecycle.fatalError == "stage failed after 5")
    }

    @Test("packets arriving while a duplex worker sleeps wake it, on either stage")
    func wakesOnEitherStage() throws {
        let stages = [PipeStage(), PipeStage()]
        let lifecycle = try Lifecycle()
        let boxed = UncheckedStages(stages: stages)
        let worker = WorkerThread(name: "driver-test") { Self.run(boxed.stages, policy: PollingPolicy(), lifecycle) }
        defer { lifecycle.stop(); worker.join() }
        var expected = [0, 0]
        for round in 0..<4 {
            Clock.sleep(nanoseconds: 20_000_000)  // long enough for the worker to be asleep in poll
            stages[round % 2].feed(1)
            expected[round % 2] += 1
            let deadline = Clock.monotonicNanoseconds() + 2_000_000_000
            while stages[round % 2].taken.load(ordering: .relaxed) < expected[round % 2], Clock.monotonicNanoseconds() < deadline {
                Clock.sleep(nanoseconds: 1_000_000)
            }
        }
        #expect(stages.map { $0.taken.load(ordering: .relaxed) } == [2, 2])
    }

    @Test("busy polling spins for the window after traffic, then the worker sleeps again")
    func busyPollWindow() throws {
        let stages = [PipeStage(), PipeStage()]
        let lifecycle = try Lifecycle()
        let boxed = UncheckedStages(stages: stages)
        let worker = WorkerThread(name: "driver-test") {
            Self.run(boxed.stages, policy: PollingPolicy(busyPollNanoseconds: 300_000_000), lifecycle)
        }
        defer { lifecycle.stop(); worker.join() }
        // Counted in pump calls rather than CPU time, which a loaded machine hands out as it likes.
        func pumps(during nanoseconds: UInt64) -> Int {
            let before = stages[0].pumps.load(ordering: .relaxed)
            Clock.sleep(nanoseconds: nanoseconds)
            return stages[0].pumps.load(ordering: .relaxed) - before
        }
        Clock.sleep(nanoseconds: 50_000_000)
        let idle = pumps(during: 100_000_000)
        #expect(idle <= 2, "a worker with no traffic polled \(idle) times in 0.1 s")
        stages[0].feed(1)
        Clock.sleep(nanoseconds: 10_000_000)
        // Inside the window it polls instead of sleeping, yielding the core when others need it: on
        // a loaded machine (CI runs the end-to-end suites alongside) that can be as few as one poll
        // per scheduler slice, and 47 in 0.15 s were seen. A sleeping worker polls at most twice in
        // 0.1 s (above), so more than 10 tells the two apart without depending on the load.
        let spinning = pumps(during: 150_000_000)
        #expect(spinning > 10, "only \(spinning) polls inside the busy-poll window")
        Clock.sleep(nanoseconds: 300_000_000)
        let after = pumps(during: 100_000_000)
        #expect(after <= 2, "still polling after the window: \(after) polls in 0.1 s")
        #expect(stages[0].taken.load(ordering: .relaxed) == 1)
    }
}

@Suite("Auto threads: the inbound stage split off to a helper under load and merged back")
struct StageLendingTests {
    private struct Unchecked<T>: @unchecked Sendable { let value: T }

    /// A policy with a short merge window, so a test waits 50 ms rather than 100 for a merge.
    private static let policy = SplitPolicy(
        splitWindowNanoseconds: 10_000_000, splitAtPerMille: 700,
        mergeWindowNanoseconds: 50_000_000, mergeBelowPerMille: 500)

    /// Starts the duplex thread over `first` and the helper, as `Tunnel.start` does for `.auto`.
    private func start(_ first: PipeStage, _ lent: LentStage<PipeStage>, _ lifecycle: Lifecycle) -> [WorkerThread] {
        let boxed = Unchecked(value: first)
        return [
            WorkerThread(name: "lending-test") {
                var driver = LendingDriver(boxed.value, lending: lent, polling: PollingPolicy())
                driver.run(lifecycle)
            },
            WorkerThread(name: "helper-test") { HelperDriver(helping: lent, polling: PollingPolicy()).run(lifecycle) }
        ]
    }

    /// Both stages busy: 48,000 packets queued on each, 20 µs of work per pump (far longer than a window).
    private struct Loaded {
        let lifecycle: Lifecycle
        let first: PipeStage, second: PipeStage
        let lent: LentStage<PipeStage>
        let workers: [WorkerThread]

        func stop() {
            lifecycle.stop()
            for worker in workers { worker.join() }
        }
    }

    private func startLoaded(failAfter: Int? = nil) throws -> Loaded {
        let lifecycle = try Lifecycle()
        let first = PipeStage(workNanoseconds: 20_000), second = PipeStage(failAfter: failAfter, workNanoseconds: 20_000)
        let lent = try LentStage(second, policy: Self.policy)
        let workers = start(first, lent, lifecycle)
        first.feed(48_000)
        second.feed(48_000)
        return Loaded(lifecycle: lifecycle, first: first, second: second, lent: lent, workers: workers)
    }

    private func waitUntil(seconds: UInt64 = 10, _ condition: () -> Bool) {
        let deadline = Clock.monotonicNanoseconds() + seconds * 1_000_000_000
        while !condition(), Clock.monotonicNanoseconds() < deadline { Clock.sleep(nanoseconds: 1_000_000) }
    }

    @Test("busy time is counted from the first batch that moved packets to the round that found none, per window")
    func busyWindow() {
        var window = BusyWindow(length: 100, now: 1000)
        window.moved(at: 1010)
        window.moved(at: 1020)  // still the same busy spell
        window.ranDry(at: 1040)
        window.ranDry(at: 1050)  // already idle: nothing added
        #expect(window.close(at: 1099) == nil)
        window.moved(at: 1090)
        // A spell still running at the window's end counts up to it, and the rest to the next window.
        let first = window.close(at: 1100)
        #expect(first?.busy == 40 && first?.elapsed == 100)
        window.ranDry(at: 1130)
        let second = window.close(at: 1250)
        #expect(second?.busy == 30 && second?.elapsed == 150)
    }

    @Test("under load the inbound stage moves to the helper, and back once load falls; no packet is lost or moved twice")
    func splitsAndMerges() throws {
        let loaded = try startLoaded()
        let (lifecycle, first, second, lent) = (loaded.lifecycle, loaded.first, loaded.second, loaded.lent)
        waitUntil { lent.isHeld(by: .helper) || lifecycle.isStopping }
        #expect(lent.isHeld(by: .helper), "a busy duplex thread never lent the stage")
        waitUntil { first.taken.load(ordering: .relaxed) == 48_000 && second.taken.load(ordering: .relaxed) == 48_000 }
        // Idle: within a merge window or two the stage is back with the duplex thread.
        waitUntil { lent.isHeld(by: .duplex) }
        #expect(lent.isHeld(by: .duplex), "an idle helper kept the stage")
        #expect(lent.splitsAndMerges == 2)
        // Back on the duplex thread, the stage still moves packets.
        second.feed(10)
        waitUntil { second.taken.load(ordering: .relaxed) == 48_010 }
        loaded.stop()
        #expect(first.taken.load(ordering: .relaxed) == 48_000)
        #expect(second.taken.load(ordering: .relaxed) == 48_010)
        #expect(second.pumpers.withLock { $0.count } == 2, "both threads moved the lent stage's packets")
        #expect(first.pumpers.withLock { $0.count } == 1)
        #expect(second.overlappingPumps.load(ordering: .relaxed) == 0)
        #expect(second.finishes.load(ordering: .relaxed) == 1 && first.finishes.load(ordering: .relaxed) == 1)
        #expect(lifecycle.fatalError == nil)
    }

    @Test("a split soon after a merge doubles the light windows the next merge needs, up to the cap; a later split needs one")
    func mergeDamping() {
        let policy = SplitPolicy(mergeWindowNanoseconds: 100_000_000, flapNanoseconds: 1_000_000_000, maximumLightWindows: 8)
        #expect(policy.lightWindowsToMerge(previous: 1, sinceMerge: nil) == 1)  // the first split
        var windows = 1
        for expected in [2, 4, 8, 8] {
            windows = policy.lightWindowsToMerge(previous: windows, sinceMerge: 30_000_000)
            #expect(windows == expected)
        }
        #expect(policy.lightWindowsToMerge(previous: 8, sinceMerge: 999_999_999) == 8)
        #expect(policy.lightWindowsToMerge(previous: 8, sinceMerge: 1_000_000_000) == 1)  // load really had fallen
        #expect(SplitPolicy().lightWindowsToMerge(previous: 64, sinceMerge: 0) == 64)
    }

    @Test("splitting again soon after a merge makes the helper wait for more light windows, and a trickle still gets the stage back")
    func resplitAfterMerge() throws {
        let loaded = try startLoaded()
        let (lifecycle, first, second, lent) = (loaded.lifecycle, loaded.first, loaded.second, loaded.lent)
        defer { loaded.stop() }
        waitUntil { lent.isHeld(by: .helper) }
        #expect(lent.isHeld(by: .helper) && lent.lightWindowsToMerge == 1)
        waitUntil { first.taken.load(ordering: .relaxed) == 48_000 && second.taken.load(ordering: .relaxed) == 48_000 }
        waitUntil { lent.isHeld(by: .duplex) }  // idle: merged after one empty window
        #expect(lent.splitsAndMerges == 2)
        // Load again at once: the merge was a flap, so the next one needs two light windows in a row.
        first.feed(48_000)
        second.feed(48_000)
        waitUntil { lent.isHeld(by: .helper) }
        #expect(lent.isHeld(by: .helper) && lent.lightWindowsToMerge == 2, "\(lent.lightWindowsToMerge)")
        waitUntil { first.taken.load(ordering: .relaxed) == 96_000 && second.taken.load(ordering: .relaxed) == 96_000 }
        // A trickle (light windows, never empty ones) gets the stage back through the count.
        var fed = 0
        let deadline = Clock.monotonicNanoseconds() + 5_000_000_000
        while !lent.isHeld(by: .duplex), Clock.monotonicNanoseconds() < deadline {
            second.feed(1)
            fed += 1
            Clock.sleep(nanoseconds: 5_000_000)
        }
        #expect(lent.isHeld(by: .duplex), "a lightly loaded helper kept the stage")
        #expect(lent.splitsAndMerges == 4)
        waitUntil { second.taken.load(ordering: .relaxed) == 96_000 + fed }
        #expect(second.taken.load(ordering: .relaxed) == 96_000 + fed)
        #expect(second.overlappingPumps.load(ordering: .relaxed) == 0)
        #expect(lifecycle.fatalError == nil)
    }

    @Test("light request/response traffic stays on the duplex thread: the helper never wakes for it")
    func lightTrafficStaysTogether() throws {
        let lifecycle = try Lifecycle()
        let first = PipeStage(), second = PipeStage()
        // Busy time is wall time, so a thread preempted in the middle of a packet's few microseconds
        // of work looks busy until it runs again: the end-to-end suites running beside this test
        // can hold a thread off a vCPU for several milliseconds, so the split window here is 50 ms
        // (35 ms busy to split), far beyond any such pause and far above 40 packets' work.
        let calm = SplitPolicy(
            splitWindowNanoseconds: 50_000_000, splitAtPerMille: 700,
            mergeWindowNanoseconds: 50_000_000, mergeBelowPerMille: 500)
        let lent = try LentStage(second, policy: calm)
        let workers = start(first, lent, lifecycle)
        for round in 1...40 {
            first.feed(1)
            second.feed(1)
            waitUntil { second.taken.load(ordering: .relaxed) == round }
            Clock.sleep(nanoseconds: 5_000_000)
        }
        lifecycle.stop()
        for worker in workers { worker.join() }
        #expect(lent.splitsAndMerges == 0)
        #expect(second.taken.load(ordering: .relaxed) == 40 && second.pumpers.withLock { $0.count } == 1)
        #expect(second.finishes.load(ordering: .relaxed) == 1)
    }

    @Test("stopping while the helper holds the stage finishes it once, on the way out")
    func stopWhileLent() throws {
        let loaded = try startLoaded()
        let (first, second, lent) = (loaded.first, loaded.second, loaded.lent)
        waitUntil { lent.isHeld(by: .helper) }
        #expect(lent.isHeld(by: .helper))
        loaded.stop()
        #expect(second.finishes.load(ordering: .relaxed) == 1 && first.finishes.load(ordering: .relaxed) == 1)
        #expect(second.overlappingPumps.load(ordering: .relaxed) == 0)
    }

    @Test("a fault in the lent stage while the helper holds it ends the process with that fault")
    func faultWhileLent() throws {
        let loaded = try startLoaded(failAfter: 40_000)
        let (lifecycle, second) = (loaded.lifecycle, loaded.second)
        waitUntil { lifecycle.isStopping }
        loaded.stop()
        #expect(lifecycle.fatalError == "stage failed after 40000")
        #expect(second.pumpers.withLock { $0.count } == 2, "the helper never held the stage")
        #expect(second.finishes.load(ordering: .relaxed) == 1)
    }
}
