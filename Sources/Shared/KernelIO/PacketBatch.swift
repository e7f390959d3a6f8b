import CLinux
import Glibc
import WireFormat

/// A vector of packet buffers allocated once and reused for every batch, with the mmsghdr, iovec,
/// sockaddr and control arrays recvmmsg needs. One batch belongs to one worker thread.
///
/// Each slot holds one packet (or, after a UDP GRO receive, several equal-sized datagrams) in
/// `range(of:)`. Sending goes through a `SendQueue`, whose messages point into slots.
public final class PacketBatch {
    public let slotCount: Int
    public let slotSize: Int
    public var count: Int { state.pointee.count }

    @usableFromInline let storage: UnsafeMutableRawPointer
    @usableFromInline let ranges: UnsafeMutablePointer<Range<Int>>
    private let segmentSizes: UnsafeMutablePointer<Int>
    /// The address each datagram was sent to, where the socket reports it (a wildcard listener).
    private let localAddresses: UnsafeMutablePointer<IPAddress?>
    /// The socket's cumulative count of buffers the kernel dropped for want of space (a UDP GSO buffer
    /// holds up to 64 datagrams), as of the last receive (SO_RXQ_OVFL); nil before the first report.
    public var kernelDrops: UInt64? { state.pointee.kernelDrops }

    /// What changes per batch, touched per packet, in memory allocated once (docs/design.md, "No
    /// exclusivity check per packet").
    private struct State {
        var count = 0
        var kernelDrops: UInt64?
        /// Messages recvmmsg may have changed since they were last pointed at their slots.
        var messagesToPrepare: Int
    }
    private let state: UnsafeMutablePointer<State>
    let vector: MessageVector
    var messages: UnsafeMutablePointer<clinux_mmsghdr> { vector.messages }

    public init(slotCount: Int, slotSize: Int) {
        precondition(slotCount > 0 && slotSize > 0)
        self.slotCount = slotCount
        self.slotSize = slotSize
        // Left uninitialised on purpose: pages are only touched when a packet lands in them, so large
        // slots cost address space, not resident memory.
        storage = .allocate(byteCount: slotCount * slotSize, alignment: 4096)
        ranges = .allocate(capacity: slotCount)
        ranges.initialize(repeating: 0..<0, count: slotCount)
        segmentSizes = .allocate(capacity: slotCount)
        segmentSizes.initialize(repeating: 0, count: slotCount)
        localAddresses = .allocate(capacity: slotCount)
        localAddresses.initialize(repeating: nil, count: slotCount)
        vector = MessageVector(capacity: slotCount)
        state = .allocate(capacity: 1)
        state.initialize(to: State(messagesToPrepare: slotCount))
    }

    deinit {
        state.deallocate()
        storage.deallocate()
        ranges.deallocate()
        segmentSizes.deallocate()
        localAddresses.deallocate()
    }

    @usableFromInline
    func slotBytes(_ slot: Int) -> UnsafeMutableBufferPointer<UInt8> {
        precondition(slot >= 0 && slot < slotCount, "slot out of range")
        return UnsafeMutableBufferPointer(
            start: (storage + slot * slotSize).assumingMemoryBound(to: UInt8.self), count: slotSize)
    }

    // MARK: Safe access for everything above this layer

    // Inlinable: the engine (another module) calls these per packet, and an unspecialised generic
    // call with a closure context costs more than the work inside.

    /// The packet bytes of `slot`.
    @inlinable
    public func withPacket<R>(_ slot: Int, _ body: (Span<UInt8>) throws -> R) rethrows -> R {
        let range = ranges[slot]
        return try body(UnsafeBufferPointer(slotBytes(slot)).span.extracting(range))
    }

    /// The whole slot, writable (encoders, segmentation and in-place framing).
    @inlinable
    public func withMutableSlot<R>(_ slot: Int, _ body: (inout MutableSpan<UInt8>) throws -> R) rethrows -> R {
        var span = slotBytes(slot).mutableSpan
        return try body(&span)
    }

    public func range(of slot: Int) -> Range<Int> { ranges[slot] }

    public func setRange(_ range: Range<Int>, of slot: Int) {
        precondition(range.lowerBound >= 0 && range.upperBound <= slotSize, "range outside slot")
        ranges[slot] = range
    }

    /// For a slot filled by a UDP GRO receive: the size of each datagram in it (the last may be
    /// shorter); 0 when the slot holds a single datagram.
    public func segmentSize(of slot: Int) -> Int { segmentSizes[slot] }

    /// Marks `count` slots as filled (by a reader that is not a socket).
    public func setCount(_ newCount: Int) {
        precondition(newCount >= 0 && newCount <= slotCount)
        state.pointee.count = newCount
    }

    /// The UDP source of a received slot.
    public func peer(of slot: Int) -> SocketAddress? {
        precondition(slot >= 0 && slot < count)
        return SocketAddress(vector.addresses + slot)
    }

    /// The relay address a received slot was sent to, when the socket reports it (bound to a
    /// wildcard address); nil otherwise.
    public func localAddress(of slot: Int) -> IPAddress? {
        precondition(slot >= 0 && slot < count)
        return localAddresses[slot]
    }

    /// Marks `slot` as received from `peer` (at `local`), holding datagrams of `segmentSize` bytes
    /// (0: one datagram), as recvmmsg would (in-memory sockets in tests).
    public func setReceived(_ slot: Int, from peer: SocketAddress, at local: IPAddress? = nil, segmentSize: Int = 0) {
        precondition(slot >= 0 && slot < slotCount)
        _ = peer.write(to: vector.addresses + slot, family: peer.ip.isIPv4 ? AF_INET : AF_INET6)
        segmentSizes[slot] = segmentSize
        localAddresses[slot] = local
    }

    // MARK: Syscall plumbing (used by UDPSocket, SendQueue and TunDevice)

    /// Points every message at its whole slot, ready for recvmmsg, with room for the UDP_GRO and
    /// SO_RXQ_OVFL control messages. Only the messages the last receive filled (and one more) need
    /// it again: the kernel writes lengths and flags into received messages only.
    func prepareForReceive() {
        for index in 0..<state.pointee.messagesToPrepare {
            vector.setMessage(
                index, bytes: storage + index * slotSize, count: slotSize,
                addressLength: socklen_t(MemoryLayout<sockaddr_storage>.size))
            messages[index].msg_hdr.msg_control = vector.control(index)
            messages[index].msg_hdr.msg_controllen = vector.controlSpace
        }
        state.pointee.messagesToPrepare = 0
    }

    func finishReceive(count received: Int) {
        for index in 0..<received {
            let length = Int(messages[index].msg_len)
            ranges[index] = 0..<min(length, slotSize)
            // MSG_TRUNC: the datagram did not fit (impossible with 64 KiB slots); an empty range makes
            // it a counted drop rather than a silently cut packet.
            if messages[index].msg_hdr.msg_flags & Int32(MSG_TRUNC) != 0 { ranges[index] = 0..<0 }
            var dropped: Int64 = -1
            var local = PacketInfoAddress()
            segmentSizes[index] = withUnsafeMutableBytes(of: &local.bytes) { bytes in
                Int(
                    withUnsafePointer(to: &messages[index].msg_hdr) {
                        clinux_msg_udp_control($0, &dropped, &local.family, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self))
                    })
            }
            localAddresses[index] = local.address
            if dropped >= 0 { state.pointee.kernelDrops = UInt64(dropped) }
        }
        state.pointee.count = received
        state.pointee.messagesToPrepare = max(state.pointee.messagesToPrepare, min(received + 1, slotCount))
    }

    func rawSlot(_ slot: Int, offset: Int) -> UnsafeMutableRawBufferPointer {
        let bytes = slotBytes(slot)
        return UnsafeMutableRawBufferPointer(start: bytes.baseAddress! + offset, count: slotSize - offset)
    }
}
