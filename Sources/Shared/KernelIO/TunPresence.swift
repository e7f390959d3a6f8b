import CLinux
import Glibc
import WireFormat

extension TunDevice {
    /// Whether an interface of this name still exists (up or down).
    public var isPresent: Bool { clinux_if_index(name) != 0 }
}

/// Tells a TUN device that is down from one that is gone, after a read or write failed. A device
/// set down (`ip link set tun2 down`) refuses writes with EIO but keeps its descriptors, and works
/// again once up: its packets are dropped and counted, the process runs on. A deleted one detaches
/// every descriptor (EBADFD from then on) and its name goes: the process ends. Asking the kernel
/// whether the name exists costs system calls, so while a device is down (every write failing) it
/// is asked at most every 10 ms; a deletion in between still shows at once as EBADFD.
public struct TunPresence {
    private var presentUntil: UInt64 = 0

    public init() {}

    /// True when `error`, from a read or write on `queue`, means the device is gone.
    public mutating func isGone(_ queue: any TunQueue, after error: SystemError) -> Bool {
        guard error.isDeviceGone else { return false }
        if error.code == .fileDescriptorInBadState { return true }  // the kernel detached this descriptor: deleted
        let now = Clock.monotonicNanoseconds()
        if now < presentUntil { return false }
        guard queue.isPresent else { return true }
        presentUntil = now &+ 10_000_000
        return false
    }
}
