import CLinux
import Glibc

/// A vector of packet buffers allocated once and reused for every batch, with the mmsghdr, iovec and
/// sockaddr arrays that recvmmsg/sendmmsg need. One batch belongs to one worker thread.
///
/// Each slot holds one packet in `range(of:)`. Receiving fills slots 0..<count; sending goes through
/// an outgoing list built with `appendOutgoing`, so a worker can send any subset without copying.
public final class PacketBatch {
    public let slotCount: Int
    public let slotSize: Int
    public private(set) var count = 0

    private let storage: UnsafeMutableRawPointer
    private let ranges: UnsafeMutablePointer<Range<Int>>
    let messages: UnsafeMutablePointer<clinux_mmsghdr>
    private let iovecs: UnsafeMutablePointer<iovec>
    private let addresses: UnsafeMutablePointer<sockaddr_storage>
    private(set) var outgoingCount = 0

    public init(slotCount: Int, slotSize: Int) {
        precondition(slotCount > 0 && slotSize > 0)
        self.slotCount = slotCount
        self.slotSize = slotSize
        // Left uninitialised on purpose: pages are only touched when a packet lands in them, so large
        // slots cost address space, not resident memory.
        storage = .allocate(byteCount: slotCount * slotSize, alignment: 4096)
        ranges = .allocate(capacity: slotCount)
        ranges.initialize(repeating: 0..<0, count: slotCount)
        messages = .allocate(capacity: slotCount)
        messages.initialize(repeating: clinux_mmsghdr(), count: slotCount)
        iovecs = .allocate(capacity: slotCount)
        iovecs.initialize(repeating: iovec(), count: slotCount)
        addresses = .allocate(capacity: slotCount)
        addresses.initialize(repeating: sockaddr_storage(), count: slotCount)
    }

    deinit {
        storage.deallocate()
        ranges.deallocate()
        messages.deallocate()
        iovecs.deallocate()
        addresses.deallocate()
    }

    private func slotBytes(_ slot: Int) -> UnsafeMutableBufferPointer<UInt8> {
        precondition(slot >= 0 && slot < slotCount, "slot out of range")
        return UnsafeMutableBufferPointer(
            start: (storage + slot * slotSize).assumingMemoryBound(to: UInt8.self), count: slotSize)
    }

    // MARK: Safe access for everything above this layer

    /// The packet bytes of `slot`.
    public func withPacket<R>(_ slot: Int, _ body: (Span<UInt8>) throws -> R) rethrows -> R {
        let range = ranges[slot]
        return try body(UnsafeBufferPointer(slotBytes(slot)).span.extracting(range))
    }

    /// The whole slot, writable (encoders and in-place encapsulation).
    public func withMutableSlot<R>(_ slot: Int, _ body: (inout MutableSpan<UInt8>) throws -> R) rethrows -> R {
        var span = slotBytes(slot).mutableSpan
        return try body(&span)
    }

    public func range(of slot: Int) -> Range<Int> { ranges[slot] }

    public func setRange(_ range: Range<Int>, of slot: Int) {
        precondition(range.lowerBound >= 0 && range.upperBound <= slotSize, "range outside slot")
        ranges[slot] = range
    }

    /// Marks `count` slots as filled (by a reader that is not a socket).
    public func setCount(_ newCount: Int) {
        precondition(newCount >= 0 && newCount <= slotCount)
        count = newCount
    }

    /// The UDP source of a received slot.
    public func peer(of slot: Int) -> SocketAddress? {
        precondition(slot >= 0 && slot < count)
        return SocketAddress(addresses + slot)
    }

    /// Queues `slot` to be sent to `destination` by the next `UDPSocket.send`.
    /// Returns false when the socket's family cannot reach `destination`.
    @discardableResult
    public func appendOutgoing(slot: Int, to destination: SocketAddress, family: Int32) -> Bool {
        let index = outgoingCount
        guard let length = destination.write(to: addresses + index, family: family) else { return false }
        let range = ranges[slot]
        iovecs[index] = iovec(iov_base: UnsafeMutableRawPointer(slotBytes(slot).baseAddress! + range.lowerBound),
                              iov_len: range.count)
        messages[index] = clinux_mmsghdr()
        messages[index].msg_hdr.msg_name = UnsafeMutableRawPointer(addresses + index)
        messages[index].msg_hdr.msg_namelen = length
        messages[index].msg_hdr.msg_iov = iovecs + index
        messages[index].msg_hdr.msg_iovlen = 1
        outgoingCount += 1
        return true
    }

    public func clearOutgoing() { outgoingCount = 0 }

    // MARK: Syscall plumbing (used by UDPSocket and TunDevice)

    /// Points every message at its whole slot, ready for recvmmsg.
    func prepareForReceive() {
        for index in 0..<slotCount {
            iovecs[index] = iovec(iov_base: UnsafeMutableRawPointer(storage + index * slotSize), iov_len: slotSize)
            messages[index] = clinux_mmsghdr()
            messages[index].msg_hdr.msg_name = UnsafeMutableRawPointer(addresses + index)
            messages[index].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            messages[index].msg_hdr.msg_iov = iovecs + index
            messages[index].msg_hdr.msg_iovlen = 1
        }
    }

    func finishReceive(count received: Int) {
        for index in 0..<received {
            let length = Int(messages[index].msg_len)
            // MSG_TRUNC in msg_flags: the datagram was larger than the slot; report its real size so
            // the codec sees a length mismatch instead of a silently cut packet.
            ranges[index] = 0..<min(length, slotSize)
            if messages[index].msg_hdr.msg_flags & Int32(MSG_TRUNC) != 0 { ranges[index] = 0..<0 }
        }
        count = received
    }

    func rawSlot(_ slot: Int, offset: Int) -> UnsafeMutableRawBufferPointer {
        let bytes = slotBytes(slot)
        return UnsafeMutableRawBufferPointer(start: bytes.baseAddress! + offset, count: slotSize - offset)
    }

    func rawPacket(_ slot: Int) -> UnsafeRawBufferPointer {
        let range = ranges[slot]
        return UnsafeRawBufferPointer(start: slotBytes(slot).baseAddress! + range.lowerBound, count: range.count)
    }
}
