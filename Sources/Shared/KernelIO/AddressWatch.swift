import CLinux
import Glibc

/// Tells whether the host's addresses may have changed since it was last asked: a NETLINK_ROUTE
/// socket subscribed to address changes. Asking drains its notifications into a stack buffer, so
/// a host whose addresses stay put costs one non-blocking receive and no allocation; only a change
/// (or lost notifications) calls for reading the addresses again.
public final class AddressWatch: Sendable {
    private let descriptor: OwnedDescriptor

    public init() throws(SystemError) {
        let fd = clinux_address_watch_open()
        descriptor = OwnedDescriptor(owning: try Syscall.shim("socket(AF_NETLINK) for address changes") { fd })
    }

    /// True when addresses were added or removed since the last call, or when the kernel dropped
    /// notifications for want of buffer space (then nobody knows: read again).
    public func changed() -> Bool {
        let drained = clinux_address_watch_drain(descriptor.rawValue)
        return drained != 0
    }
}
