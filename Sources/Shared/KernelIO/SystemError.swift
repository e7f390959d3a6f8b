import CLinux
import Glibc

/// A failed system call: which call (and on what), and the errno it returned.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public let operation: String
    public let code: Int32

    public init(_ operation: String, code: Int32 = clinux_errno()) {
        self.operation = operation
        self.code = code
    }

    /// The device behind the descriptor no longer exists (a deleted TUN device answers EBADFD or EIO).
    public var isDeviceGone: Bool { code == EBADFD || code == EIO || code == ENODEV }

    public var message: String { String(cString: strerror(code)) }
    public var description: String { "\(operation): \(message)" }
}

/// The one way this layer makes a system call: EINTR is retried here and nowhere else, and a failure
/// becomes a `SystemError` that names the call. Modelled on swift-system's `valueOrErrno` and
/// swift-nio's `syscall(blocking:)`.
enum Syscall {
    /// Runs a call that returns -1 and sets errno on failure.
    @inline(__always)
    static func call<Result: FixedWidthInteger>(_ operation: @autoclosure () -> String,
                                                _ body: () -> Result) throws(SystemError) -> Result {
        while true {
            let result = body()
            if result >= 0 { return result }
            let code = clinux_errno()
            if code == EINTR { continue }
            throw SystemError(operation(), code: code)
        }
    }

    /// As `call`, for a non-blocking descriptor: nil when the call would block (EAGAIN).
    @inline(__always)
    static func nonBlocking<Result: FixedWidthInteger>(_ operation: @autoclosure () -> String,
                                                       _ body: () -> Result) throws(SystemError) -> Result? {
        while true {
            let result = body()
            if result >= 0 { return result }
            let code = clinux_errno()
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return nil }
            throw SystemError(operation(), code: code)
        }
    }

    /// Runs a CLinux wrapper, which returns -errno instead of setting errno.
    @inline(__always)
    static func shim<Result: FixedWidthInteger & SignedInteger>(_ operation: @autoclosure () -> String,
                                                _ body: () -> Result) throws(SystemError) -> Result {
        while true {
            let result = body()
            if result >= 0 { return result }
            if result == -Result(EINTR) { continue }
            throw SystemError(operation(), code: Int32(truncatingIfNeeded: -result))
        }
    }

    /// setsockopt with an Int32 value.
    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32, _ operation: String) throws(SystemError) {
        var value = value
        _ = try call("setsockopt \(operation)") { setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) }
    }

    /// getsockopt of an Int32 value.
    static func option(_ fd: Int32, _ level: Int32, _ name: Int32, _ operation: String) throws(SystemError) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = try call("getsockopt \(operation)") { getsockopt(fd, level, name, &value, &length) }
        return value
    }
}
