import KernelIO
import WireFormat

/// Periodic work off the data plane (own-address refresh today; keepalives, echoes and table
/// expiry use the same thread): one thread that sleeps until the next task is due or the process
/// stops, so idle workers are never woken for it and no packet pays for it.
public struct Housekeeping: Sendable {
    public struct Task: Sendable {
        public var name: String
        public var intervalNanoseconds: UInt64
        public var run: @Sendable () -> Void

        public init(_ name: String, every seconds: Double, _ run: @escaping @Sendable () -> Void) {
            precondition(seconds > 0, "a periodic task needs an interval")
            self.name = name
            intervalNanoseconds = UInt64(seconds * 1e9)
            self.run = run
        }
    }

    public let tasks: [Task]

    public init(_ tasks: [Task]) { self.tasks = tasks }

    /// Runs the tasks on a thread of their own until `lifecycle` stops; nil when there are none.
    public func start(_ lifecycle: Lifecycle) -> WorkerThread? {
        guard !tasks.isEmpty else { return nil }
        let tasks = tasks
        return WorkerThread(name: "housekeeping") {
            let start = Clock.monotonicNanoseconds()
            var due = tasks.map { start + $0.intervalNanoseconds }
            let readiness = PollSet(capacity: 0, waker: lifecycle.waker)
            while !lifecycle.isStopping {
                let now = Clock.monotonicNanoseconds()
                for index in tasks.indices where due[index] <= now {
                    tasks[index].run()
                    due[index] = max(due[index] + tasks[index].intervalNanoseconds, now + 1)
                }
                let next = due.min() ?? now
                let wait = next > now ? (next - now + 999_999) / 1_000_000 : 0
                readiness.wait(timeoutMilliseconds: Int32(min(wait, 60_000)))
            }
        }
    }
}
