import WireFormat

/// Plain IP packets of one frame, laid out in one buffer slot ready to be encapsulated in place:
/// packet k at `start + k * stride`, `length` bytes long (the last one `lastLength`), with the
/// framing's headroom free in front of each and its tailroom behind. A frame that was one
/// packet is a run of one; the segments of a super-packet are a run of many, back to back at a
/// stride that leaves them back to back once encapsulated, so they can leave as one UDP GSO message.
public struct PacketRun: Sendable {
    /// In the reader's segment buffer (a cut super-packet) rather than its frame buffer: see
    /// `TunReader.buffer(of:)`. A plain value, so handing runs around costs no reference counting.
    public let isSegmented: Bool
    public let slot: Int
    public let start: Int
    public let stride: Int
    public let count: Int
    public let length: Int
    public let lastLength: Int

    public func range(of index: Int) -> Range<Int> {
        let lower = start + index * stride
        return lower..<(lower + (index == count - 1 ? lastLength : length))
    }
}

/// One entry of a TUN read: packets, or a frame that carried none that could be sent.
public enum TunReadEntry: Sendable {
    case packets(PacketRun)
    /// `count` packets dropped for `reason` (a malformed frame counts as one).
    case dropped(DropReason, count: Int)
}

/// The read side of the TUN layer, one per worker: it reads a batch of frames from a queue and hands
/// out plain IP packets. Offloads stay behind it: it strips virtio-net headers, completes checksums
/// the kernel left partial and cuts TCP/UDP super-packets into packets (`GSOSegmenter`), so the
/// engine never sees a virtio-net header. Buffers are allocated once.
public struct TunReader {
    public let queue: any TunQueue
    public let batchSize: Int
    /// Bytes kept free in front of every packet, and in all per packet, for the framing.
    public let headroom: Int
    public let overhead: Int
    private let virtioLength: Int
    private let frames: PacketBatch
    /// Segments of up to `segmentSlots` super-packets per batch; a batch stops reading early when
    /// they are taken. Only touched (resident) when the kernel hands over super-packets.
    private let segments: PacketBatch
    private var entries: [TunReadEntry]
    /// Bytes of the packets read by the last `read` (virtio-net headers not counted).
    public private(set) var bytesRead = 0
    public static var segmentSlots: Int { 4 }

    public init(queue: any TunQueue, batchSize: Int = 16, headroom: Int = 0, overhead: Int = 0) {
        precondition(batchSize > 0 && headroom >= 0 && overhead >= headroom)
        self.queue = queue
        self.batchSize = batchSize
        self.headroom = headroom
        self.overhead = overhead
        virtioLength = queue.hasVirtioHeaders ? VirtioNetHeader.length : 0
        frames = PacketBatch(slotCount: batchSize, slotSize: overhead + virtioLength + 65536)
        segments = PacketBatch(slotCount: Self.segmentSlots, slotSize: 2 * 65536)
        entries = Array(repeating: .dropped(.truncated, count: 0), count: batchSize)
    }

    public func entry(_ index: Int) -> TunReadEntry { entries[index] }

    /// The buffer a run's packets lie in (for in-place framing and the send queue).
    public func buffer(of run: PacketRun) -> PacketBatch { run.isSegmented ? segments : frames }

    /// Reads what the queue has, up to a batch, without waiting. Returns the number of entries.
    public mutating func read() throws(SystemError) -> Int {
        bytesRead = 0
        var filled = 0, usedSegments = 0
        while filled < batchSize {
            // Every frame read may be a super-packet: read no more than there are segment slots for.
            let limit = virtioLength > 0 ? min(batchSize - filled, Self.segmentSlots - usedSegments) : batchSize - filled
            if limit == 0 { break }
            let read = try queue.readFrames(into: frames, slots: filled..<(filled + limit), offset: headroom)
            for slot in filled..<(filled + read) { entries[slot] = take(slot, usedSegments: &usedSegments) }
            filled += read
            if read < limit { break }
        }
        return filled
    }

    private mutating func take(_ slot: Int, usedSegments: inout Int) -> TunReadEntry {
        let range = frames.range(of: slot)
        bytesRead += max(0, range.count - virtioLength)  // a frame shorter than its header carried nothing
        guard virtioLength > 0 else { return .packets(single(slot, range)) }
        guard range.count > virtioLength, let header = frames.withPacket(slot, { VirtioNetHeader($0) }) else {
            return .dropped(.truncated, count: 1)
        }
        let packet = (range.lowerBound + virtioLength)..<range.upperBound
        frames.setRange(packet, of: slot)
        if header.isGSO {
            let segmentSlot = usedSegments
            let (headroom, overhead) = (headroom, overhead)
            let result = segments.withMutableSlot(segmentSlot) { output in
                frames.withPacket(slot) { GSOSegmenter.segment($0, header: header, into: &output, headroom: headroom, overhead: overhead) }
            }
            switch result {
            case let .success(layout):
                usedSegments += 1
                return .packets(
                    PacketRun(
                        isSegmented: true, slot: segmentSlot, start: headroom, stride: layout.stride,
                        count: layout.count, length: layout.segmentLength, lastLength: layout.lastLength))
            case let .failure(reason):
                return .dropped(reason, count: 1)
            }
        }
        if header.needsChecksumCompletion {
            let completed = frames.withMutableSlot(slot) {
                TransportChecksum.finishPartial(&$0, packet: packet, start: Int(header.checksumStart), offset: Int(header.checksumOffset))
            }
            if !completed { return .dropped(.badTransportHeader, count: 1) }
        }
        return .packets(single(slot, packet))
    }

    private func single(_ slot: Int, _ packet: Range<Int>) -> PacketRun {
        PacketRun(
            isSegmented: false, slot: slot, start: packet.lowerBound, stride: packet.count, count: 1,
            length: packet.count, lastLength: packet.count)
    }
}
