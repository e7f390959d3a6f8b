import CLinux
import Glibc

/// A failed system call: which call (and on what), and the errno it returned.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public let operation: String
    public let code: Code

    public init(_ operation: String, code: Code = .current) {
        self.operation = operation
        self.code = code
    }

    /// The device behind the descriptor no longer exists (a deleted TUN device answers EBADFD or EIO).
    public var isDeviceGone: Bool { code == .fileDescriptorInBadState || code == .ioError || code == .noSuchDevice }

    public var message: String { code.message }
    public var description: String { "\(operation): \(message)" }

    /// An errno value, compared by name (as swift-system's `Errno`) rather than as a bare number.
    /// The names are swift-system's where it has one. A `switch` over codes matches these constants.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: Int32

        public init(rawValue: Int32) { self.rawValue = rawValue }
        public init(_ rawValue: Int32) { self.rawValue = rawValue }

        /// The calling thread's errno now.
        public static var current: Code { Code(clinux_errno()) }

        /// strerror's text for the code.
        public var message: String { String(cString: strerror(rawValue)) }
        public var description: String { message }

        public static let notPermitted = Code(EPERM)
        public static let noSuchFileOrDirectory = Code(ENOENT)
        public static let interrupted = Code(EINTR)
        public static let ioError = Code(EIO)
        public static let noSuchAddressOrDevice = Code(ENXIO)
        public static let badFileDescriptor = Code(EBADF)
        /// EAGAIN, which is EWOULDBLOCK on Linux.
        public static let wouldBlock = Code(EAGAIN)
        public static let permissionDenied = Code(EACCES)
        public static let badAddress = Code(EFAULT)
        public static let resourceBusy = Code(EBUSY)
        public static let noSuchDevice = Code(ENODEV)
        public static let invalidArgument = Code(EINVAL)
        /// EBADFD (Linux): the descriptor is valid but its file is in a bad state (a deleted TUN device).
        public static let fileDescriptorInBadState = Code(EBADFD)
        public static let notSocket = Code(ENOTSOCK)
        public static let addressFamilyNotSupported = Code(EAFNOSUPPORT)
        public static let addressInUse = Code(EADDRINUSE)
        public static let addressNotAvailable = Code(EADDRNOTAVAIL)
        public static let networkUnreachable = Code(ENETUNREACH)
        public static let connectionAbort = Code(ECONNABORTED)
        public static let noBufferSpace = Code(ENOBUFS)
        public static let connectionRefused = Code(ECONNREFUSED)
        public static let noRouteToHost = Code(EHOSTUNREACH)
        public static let noSpace = Code(ENOSPC)
        public static let protocolError = Code(EPROTO)

        /// Codes no correct program gets from a call on its own descriptors and buffers: a closed or
        /// never-opened descriptor (EBADF) or a pointer outside the address space (EFAULT). Carrying on
        /// would act on another owner's descriptor or memory, so `Syscall` stops the process instead.
        var isProgrammerError: Bool { self == .badFileDescriptor || self == .badAddress }
    }
}

/// The one way this layer makes a system call: EINTR is retried here and nowhere else, and a failure
/// becomes a `SystemError` that names the call. EBADF and EFAULT are not failures to handle but bugs
/// in this process: they stop it with the call's name (as swift-nio's wrapper does). Modelled on
/// swift-system's `valueOrErrno` and swift-nio's `syscall(blocking:)`.
enum Syscall {
    /// What every wrapper shares: runs `body` again while it fails with EINTR; its result, or the
    /// code of the failure (`code` reads it: errno, or the shim's negated return).
    @inline(__always)
    private static func retryingInterrupts<Result: FixedWidthInteger>(
        _ body: () -> Result, code: (Result) -> SystemError.Code
    ) -> (result: Result, failure: SystemError.Code?) {
        while true {
            let result = body()
            if result >= 0 { return (result, nil) }
            let failure = code(result)
            if failure != .interrupted { return (result, failure) }
        }
    }

    /// Runs a call that returns -1 and sets errno on failure.
    @inline(__always)
    static func call<Result: FixedWidthInteger>(
        _ operation: @autoclosure () -> String,
        _ body: () -> Result
    ) throws(SystemError) -> Result {
        let (result, code) = retryingInterrupts(body) { _ in .current }
        if let code { throw failure(operation(), code) }
        return result
    }

    /// As `call`, for a non-blocking descriptor: nil when the call would block (EAGAIN).
    @inline(__always)
    static func nonBlocking<Result: FixedWidthInteger>(
        _ operation: @autoclosure () -> String,
        _ body: () -> Result
    ) throws(SystemError) -> Result? {
        let (result, code) = retryingInterrupts(body) { _ in .current }
        if code == .wouldBlock { return nil }
        if let code { throw failure(operation(), code) }
        return result
    }

    /// Runs a CLinux wrapper, which returns -errno instead of setting errno.
    @inline(__always)
    static func shim<Result: FixedWidthInteger & SignedInteger>(
        _ operation: @autoclosure () -> String,
        _ body: () -> Result
    ) throws(SystemError) -> Result {
        let (result, code) = retryingInterrupts(body) { SystemError.Code(Int32(truncatingIfNeeded: -$0)) }
        if let code { throw failure(operation(), code) }
        return result
    }

    /// As `call`, on a descriptor this process inherited rather than opened (stdout, stderr): there,
    /// EBADF means whoever started the process closed it, a fact to report rather than a bug.
    static func onInherited<Result: FixedWidthInteger>(
        _ operation: @autoclosure () -> String,
        _ body: () -> Result
    ) throws(SystemError) -> Result {
        let (result, code) = retryingInterrupts(body) { _ in .current }
        if code == .badFileDescriptor { throw SystemError(operation(), code: .badFileDescriptor) }
        if let code { throw failure(operation(), code) }
        return result
    }

    /// The error to throw for `code`, after stopping the process if the code means a bug here.
    @inline(__always)
    static func failure(_ operation: String, _ code: SystemError.Code) -> SystemError {
        if code.isProgrammerError {
            fatalError("\(operation) failed with \(code.message) (errno \(code.rawValue)): a bug in udptun, not a condition it handles")
        }
        return SystemError(operation, code: code)
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
