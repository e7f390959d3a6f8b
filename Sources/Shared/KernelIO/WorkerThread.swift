import CLinux
import Glibc

/// A named OS thread for a blocking IO loop; `join` waits for it. Workers are plain threads rather
/// than tasks because they block in poll/recvmmsg and must never be scheduled away mid-batch.
public final class WorkerThread: @unchecked Sendable {
    // Set once in init, read only by join on the creating thread.
    private var thread = pthread_t()

    private final class Body {
        let run: @Sendable () -> Void
        init(run: @escaping @Sendable () -> Void) { self.run = run }
    }

    /// The thread carries `name` by the time this returns (named here, not by the thread itself,
    /// so that whoever looks right after start, in /proc or top -H, finds it).
    public init(name: String, _ run: @escaping @Sendable () -> Void) {
        let body = Unmanaged.passRetained(Body(run: run)).toOpaque()
        let status = pthread_create(
            &thread, nil,
            { argument in
                Unmanaged<Body>.fromOpaque(argument!).takeRetainedValue().run()
                return nil
            }, body)
        precondition(status == 0, "pthread_create failed: \(status)")
        clinux_set_thread_name(thread, name)
    }

    public func join() { pthread_join(thread, nil) }

    /// Keeps the thread on one CPU from now on (its cache stays warm and a busy-polling thread
    /// does not take turns with another on the same core).
    public func pin(to cpu: Int) throws(SystemError) {
        let result = clinux_pin_thread(thread, Int32(cpu))
        if result < 0 { throw SystemError("pthread_setaffinity_np(CPU \(cpu))", code: SystemError.Code(-result)) }
    }
}
