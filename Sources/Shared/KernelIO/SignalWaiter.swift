import CLinux
import Glibc

/// Delivers SIGINT/SIGTERM as readable events on a signalfd, so the main thread can wait for a
/// signal, a worker's stop request and its next report time in one poll. Create it before starting
/// any worker: the signal mask it sets is inherited by threads created afterwards.
public final class SignalWaiter: Sendable {
    private let descriptor: OwnedDescriptor
    var fd: Int32 { descriptor.rawValue }

    public enum Event: Equatable, Sendable {
        case signal(Int32)
        case stopRequested
        case timedOut
    }

    public init() throws(SystemError) {
        signal(SIGPIPE, SIG_IGN)
        let fd = clinux_termination_signalfd()
        descriptor = OwnedDescriptor(owning: try Syscall.shim("signalfd") { fd })
    }

    public func wait(seconds: Double, waker: Waker) -> Event {
        let milliseconds = Int32(min(max(0, seconds * 1000), 3_600_000).rounded(.up))
        let seen = waitFor(fd, .read, waker: waker, timeoutMilliseconds: milliseconds)
        if seen.isReady {
            let number = clinux_read_signal(fd)
            if number > 0 { return .signal(number) }
        }
        return seen.isWoken ? .stopRequested : .timedOut
    }

    public static func name(_ number: Int32) -> String {
        switch number {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        default: "signal \(number)"
        }
    }
}
