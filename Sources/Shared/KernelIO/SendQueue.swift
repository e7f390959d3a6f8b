import CLinux
import Glibc
import WireFormat

/// The messages of one sendmmsg call. Each message points at bytes in `PacketBatch` slots (no copy)
/// and may carry a UDP_SEGMENT size, so one message can be many datagrams (UDP GSO): either a
/// super-packet's segments laid out back to back, or separate packets of equal length to the same
/// peer gathered from several slots (one iovec each), which then cross the stack as one buffer.
public final class SendQueue {
    public let capacity: Int
    public var count: Int { state.pointee.count }
    private let vector: MessageVector
    var messages: UnsafeMutablePointer<clinux_mmsghdr> { vector.messages }
    /// Datagrams per message (for counting sent datagrams, not messages).
    private let datagrams: UnsafeMutablePointer<Int>
    /// The UDP_SEGMENT size of each message (0 for a single datagram).
    private let segmentSizes: UnsafeMutablePointer<Int>
    /// The source address each message must leave from (nil: the kernel's choice).
    private let sources: UnsafeMutablePointer<IPAddress?>
    /// What changes per packet, in memory allocated once (docs/design.md, "No exclusivity check
    /// per packet").
    private struct State {
        var count = 0
        /// iovecs in use; every append takes one, so messages never outnumber them.
        var iovecCount = 0
        /// The last message while it can take more packets: their peer, the length each must have
        /// (a shorter one may end it), and its bytes so far.
        var open: (destination: SocketAddress, source: IPAddress?, segmentSize: Int, bytes: Int)?
    }
    private let state: UnsafeMutablePointer<State>
    /// UDP GSO limits: 64 segments (UDP_MAX_SEGMENTS) and one IP datagram's worth of bytes.
    public static var maximumSegments: Int { 64 }
    public static var maximumBytes: Int { 65_000 }

    public init(capacity: Int) {
        self.capacity = capacity
        vector = MessageVector(capacity: capacity)
        datagrams = .allocate(capacity: capacity)
        datagrams.initialize(repeating: 0, count: capacity)
        segmentSizes = .allocate(capacity: capacity)
        segmentSizes.initialize(repeating: 0, count: capacity)
        sources = .allocate(capacity: capacity)
        sources.initialize(repeating: nil, count: capacity)
        state = .allocate(capacity: 1)
        state.initialize(to: State())
    }

    deinit {
        datagrams.deallocate()
        segmentSizes.deallocate()
        sources.deallocate()
        state.deinitialize(count: 1)
        state.deallocate()
    }

    public var isFull: Bool { state.pointee.count == capacity || state.pointee.iovecCount == capacity }

    /// Datagrams queued (messages can hold several).
    public var datagramTotal: Int { (0..<count).reduce(0) { $0 + datagrams[$1] } }

    /// Queues `range` of `slot` in `batch` for `destination`, to leave from `source` (one of this
    /// host's addresses; nil lets the kernel choose). With `segmentSize`, the bytes are
    /// consecutive datagrams of that size (the last may be shorter), sent with UDP GSO. With
    /// `gather`, a single datagram joins the previous message when that one goes to the same peer
    /// in datagrams of the same length (UDP GSO over several iovecs; the socket must have it on).
    /// Returns false when the queue is full or the socket's family cannot reach `destination`.
    @discardableResult
    public func append(
        _ batch: PacketBatch, slot: Int, range: Range<Int>, to destination: SocketAddress,
        from source: IPAddress? = nil, family: Int32, segmentSize: Int? = nil, gather: Bool = false
    ) -> Bool {
        guard !isFull else { return false }
        let count = state.pointee.count, iovecCount = state.pointee.iovecCount
        let bytes = batch.rawSlot(slot, offset: range.lowerBound)
        precondition(range.count <= bytes.count)
        if gather, segmentSize == nil, let open = state.pointee.open, open.destination == destination, open.source == source,
            range.count <= open.segmentSize,
            datagrams[count - 1] < Self.maximumSegments, open.bytes + range.count <= Self.maximumBytes
        {
            vector.extendMessage(count - 1, iovecIndex: iovecCount, bytes: bytes.baseAddress, count: range.count)
            state.pointee.iovecCount = iovecCount + 1
            if datagrams[count - 1] == 1 {
                segmentSizes[count - 1] = open.segmentSize
                setControl(count - 1)
            }
            datagrams[count - 1] += 1
            // A shorter datagram can only be the last of a GSO message.
            state.pointee.open = range.count < open.segmentSize ? nil : (destination, source, open.segmentSize, open.bytes + range.count)
            return true
        }
        guard let length = destination.write(to: vector.addresses + count, family: family) else { return false }
        vector.setMessage(count, iovecIndex: iovecCount, bytes: bytes.baseAddress, count: range.count, addressLength: length)
        state.pointee.iovecCount = iovecCount + 1
        state.pointee.open = gather && segmentSize == nil ? (destination, source, range.count, range.count) : nil
        sources[count] = source
        if let segmentSize, range.count > segmentSize {
            datagrams[count] = (range.count + segmentSize - 1) / segmentSize
            segmentSizes[count] = segmentSize
        } else {
            datagrams[count] = 1
            segmentSizes[count] = 0
        }
        if segmentSizes[count] > 0 || source != nil { setControl(count) }
        state.pointee.count = count + 1
        return true
    }

    /// Writes message `index`'s control messages: its UDP_SEGMENT size and source address.
    private func setControl(_ index: Int) {
        let control = vector.control(index), segmentSize = UInt16(segmentSizes[index])
        PacketInfoAddress.with(sources[index]) { family, address in
            withUnsafeMutablePointer(to: &messages[index].msg_hdr) {
                clinux_msg_set_send_control($0, control, segmentSize, family, address)
            }
        }
    }

    /// The source address message `index` leaves from, if one was asked for.
    func source(of index: Int) -> IPAddress? { sources[index] }

    func datagramCount(of message: Int) -> Int { datagrams[message] }

    /// Every datagram queued, as the kernel would send it: its destination, the source asked for and
    /// its bytes (for in-memory sockets in tests, and for checking layouts).
    public func forEachDatagram(_ body: (SocketAddress, IPAddress?, Span<UInt8>) -> Void) {
        for index in 0..<count {
            let header = messages[index].msg_hdr
            guard let destination = SocketAddress(header.msg_name!.assumingMemoryBound(to: sockaddr_storage.self)) else { continue }
            let iovecs = UnsafeBufferPointer(start: header.msg_iov, count: Int(header.msg_iovlen))
            let size = segmentSizes[index]
            for iovec in iovecs {
                let bytes = UnsafeRawBufferPointer(start: iovec.iov_base, count: iovec.iov_len).bindMemory(to: UInt8.self)
                // One iovec per datagram when gathered; one iovec of back-to-back datagrams otherwise.
                let step = iovecs.count == 1 && size > 0 ? size : max(bytes.count, 1)
                var offset = 0
                repeat {
                    let end = min(offset + step, bytes.count)
                    body(destination, sources[index], bytes.span.extracting(offset..<end))
                    offset = end
                } while offset < bytes.count
            }
        }
    }

    public func clear() {
        state.pointee = State()
    }
}
