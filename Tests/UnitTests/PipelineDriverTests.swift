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

    init(failAfter: Int? = nil) {
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
        var buffer = [UInt8](repeating: 0, count: 16)
        let count = read(readEnd, &buffer, 16)
        guard count > 0 else { return 0 }
        let total = taken.add(count, ordering: .relaxed).newValue
        if let failAfter, total >= failAfter {
            lifecycle.fail("stage failed after \(total)")
            return nil
        }
        return count
    }
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
              Clock.monotonicNanoseconds() < deadline {
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

    @Test("every configuration drains every stage and stops when asked", arguments: [
        (1, UInt64(0)), (1, UInt64(2_000_000)), (2, UInt64(0)), (2, UInt64(2_000_000)),
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
