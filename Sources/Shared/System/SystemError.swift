import CLinux
import Glibc

/// A failed system call: which operation, and the errno it returned.
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
