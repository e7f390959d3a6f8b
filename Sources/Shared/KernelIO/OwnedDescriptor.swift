import Glibc

/// An open file descriptor with exactly one owner: it is closed once, when the owner goes away, and
/// cannot be copied, so no second close can reach a number the kernel has since given to someone else.
/// (The opposite of swift-system's `FileDescriptor`, a copyable number that owns nothing.)
/// Whatever can fail while a descriptor is being set up is done on the owned value before it is moved
/// into its long-lived holder, so a failed set-up closes it exactly once, on the way out.
public struct OwnedDescriptor: ~Copyable, @unchecked Sendable {
    public let rawValue: Int32

    /// Takes ownership of `rawValue` (a descriptor this process opened and nobody else closes).
    init(owning rawValue: Int32) {
        precondition(rawValue >= 0, "not a descriptor")
        self.rawValue = rawValue
    }

    deinit { _ = Glibc.close(rawValue) }
}
