import CLinux
import Glibc

/// The messages of one sendmmsg call. Each message points at bytes in some `PacketBatch` slot (no
/// copy) and may carry a UDP_SEGMENT size, so one message can be many datagrams (UDP GSO).
public final class SendQueue {
    public let capacity: Int
    public private(set) var count = 0
    private let vector: MessageVector
    var messages: UnsafeMutablePointer<clinux_mmsghdr> { vector.messages }
    /// Datagrams per message (for counting sent datagrams, not messages).
    private let datagrams: UnsafeMutablePointer<Int>

    public init(capacity: Int) {
        self.capacity = capacity
        vector = MessageVector(capacity: capacity)
        datagrams = .allocate(capacity: capacity)
        datagrams.initialize(repeating: 0, count: capacity)
    }

    deinit { datagrams.deallocate() }

    public var isFull: Bool { count == capacity }

    /// Queues `range` of `slot` in `batch` for `destination`. With `segmentSize`, the bytes are
    /// consecutive datagrams of that size (the last may be shorter), sent with UDP GSO.
    /// Returns false when the queue is full or the socket's family cannot reach `destination`.
    @discardableResult
    public func append(_ batch: PacketBatch, slot: Int, range: Range<Int>, to destination: SocketAddress,
                       family: Int32, segmentSize: Int? = nil) -> Bool {
        guard count < capacity, let length = destination.write(to: vector.addresses + count, family: family) else { return false }
        let bytes = batch.rawSlot(slot, offset: range.lowerBound)
        precondition(range.count <= bytes.count)
        vector.setMessage(count, bytes: bytes.baseAddress, count: range.count, addressLength: length)
        if let segmentSize, range.count > segmentSize {
            withUnsafeMutablePointer(to: &messages[count].msg_hdr) {
                clinux_msg_set_segment_size($0, vector.control(count), UInt16(segmentSize))
            }
            datagrams[count] = (range.count + segmentSize - 1) / segmentSize
        } else {
            datagrams[count] = 1
        }
        count += 1
        return true
    }

    func datagramCount(of message: Int) -> Int { datagrams[message] }

    public func clear() { count = 0 }
}
