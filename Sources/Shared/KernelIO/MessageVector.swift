import CLinux
import Glibc

/// The arrays one recvmmsg/sendmmsg call works on, allocated once: message headers, one iovec, one
/// socket address and room for the UDP control messages (GRO, GSO, drop count) per message.
final class MessageVector {
    let capacity: Int
    let messages: UnsafeMutablePointer<clinux_mmsghdr>
    let iovecs: UnsafeMutablePointer<iovec>
    let addresses: UnsafeMutablePointer<sockaddr_storage>
    private let controls: UnsafeMutableRawPointer
    let controlSpace: Int

    init(capacity: Int) {
        self.capacity = capacity
        messages = .allocate(capacity: capacity)
        messages.initialize(repeating: clinux_mmsghdr(), count: capacity)
        iovecs = .allocate(capacity: capacity)
        iovecs.initialize(repeating: iovec(), count: capacity)
        addresses = .allocate(capacity: capacity)
        addresses.initialize(repeating: sockaddr_storage(), count: capacity)
        controlSpace = Int(clinux_udp_control_space())
        controls = .allocate(byteCount: controlSpace * capacity, alignment: 16)
    }

    deinit {
        messages.deallocate()
        iovecs.deallocate()
        addresses.deallocate()
        controls.deallocate()
    }

    func control(_ index: Int) -> UnsafeMutableRawPointer { controls + index * controlSpace }

    /// Points message `index` at `bytes` (through iovec `iovecIndex`, by default its own) and at its own
    /// address slot (the address itself is written by the caller, or by the kernel on receive).
    func setMessage(_ index: Int, iovecIndex: Int? = nil, bytes: UnsafeMutableRawPointer?, count: Int, addressLength: socklen_t) {
        let iovecIndex = iovecIndex ?? index
        iovecs[iovecIndex] = iovec(iov_base: bytes, iov_len: count)
        messages[index] = clinux_mmsghdr()
        messages[index].msg_hdr.msg_name = UnsafeMutableRawPointer(addresses + index)
        messages[index].msg_hdr.msg_namelen = addressLength
        messages[index].msg_hdr.msg_iov = iovecs + iovecIndex
        messages[index].msg_hdr.msg_iovlen = 1
    }

    /// Adds `bytes` as the next iovec of message `index`, whose iovecs end just before `iovecIndex`.
    func extendMessage(_ index: Int, iovecIndex: Int, bytes: UnsafeMutableRawPointer?, count: Int) {
        iovecs[iovecIndex] = iovec(iov_base: bytes, iov_len: count)
        messages[index].msg_hdr.msg_iovlen += 1
    }
}
