import WireFormat

/// What a `TunWriter` did since it was last asked: packets written (a coalesced super-packet counts
/// as the packets it carries), their bytes, and packets the kernel refused.
public struct TunWriteCounts: Sendable, Equatable {
    public var written = 0
    public var writtenBytes = 0
    public var failed = 0

    public init() {}
}

/// The write side of the TUN layer, one per worker: it takes validated plain IP packets and writes
/// them to the device. On a device with virtio-net headers it coalesces consecutive packets of a TCP
/// flow (and of a UDP flow, where the device takes UDP GSO) into one super-packet per write
/// (`SegmentCoalescer`), written as the group's rewritten headers followed by each packet's payload
/// where it lies (`GatherList`, one writev); otherwise it writes packet by packet. Every packet
/// handed to `write` must stay in place, unchanged, until the next `flush`; call `flush` at the end
/// of every batch, before the batch's buffers are reused, so nothing waits. A struct held in its
/// owner's struct, updated in place (docs/design.md, "No exclusivity check per packet").
public struct TunWriter {
    public let coalesces: Bool
    /// Every queue of the device: with several, each flow goes through the queue `FlowSteering`
    /// picks for it (a coalesced group is one flow), not the writer's own.
    private let queues: [any TunQueue]
    /// The group's headers, rewritten by the coalescer.
    private let headers: PacketBatch
    private let payloads: GatherList
    private var coalescer: SegmentCoalescer
    private var counts = TunWriteCounts()
    private var presence = TunPresence()

    /// `coalesce` asks for coalescing; it is on only where the device takes virtio-net headers.
    public init(queues: [any TunQueue], coalesce: Bool = true) {
        precondition(!queues.isEmpty, "a writer needs a queue")
        self.queues = queues
        coalesces = coalesce && queues[0].hasVirtioHeaders
        coalescer = SegmentCoalescer(coalescesUDP: queues[0].acceptsUDPSegmentation)
        headers = PacketBatch(slotCount: 1, slotSize: SegmentCoalescer.maximumHeadersLength)
        payloads = GatherList(capacity: SegmentCoalescer.maximumSegments)
    }

    public var name: String { queues[0].name }

    /// The counts since the last call, which resets them.
    public mutating func takeCounts() -> TunWriteCounts {
        defer { counts = TunWriteCounts() }
        return counts
    }

    /// Queues or writes `packet`, which stays in place until the next `flush`. Throws only when the
    /// device is gone (a device that is down refuses the write, which is counted as failed).
    public mutating func write(_ packet: Span<UInt8>, info: IPPacketInfo) throws(SystemError) {
        if coalesces {
            if !coalescer.isEmpty {
                let appended = headers.withMutableSlot(0) { slot in
                    payloads.withPayload(0) { coalescer.append(packet, info: info, headers: &slot, firstPayload: $0) }
                }
                if appended {
                    payloads.append(packet.extracting(coalescer.headersLength..<packet.count))
                    return
                }
                try flush()
            }
            if coalescer.isCandidate(packet, info: info) {
                headers.withMutableSlot(0) { coalescer.start(packet, info: info, headers: &$0) }
                payloads.append(packet.extracting(coalescer.headersLength..<packet.count))
                return
            }
        }
        try emit(packet)
    }

    /// Writes the group being coalesced, if any.
    public mutating func flush() throws(SystemError) {
        guard !coalescer.isEmpty else { return }
        defer { payloads.reset() }
        let packets = coalescer.count
        let headersLength = coalescer.headersLength
        let (length, header) = headers.withMutableSlot(0) { coalescer.finish(headers: &$0) }
        headers.setRange(0..<headersLength, of: 0)
        let payloads = payloads
        var failure: SystemError?
        headers.withPacket(0) { groupHeaders in
            let queue = queues[FlowSteering.queue(for: groupHeaders, queues: queues.count)]
            do throws(SystemError) {
                try counting(packets: packets, bytes: length, on: queue) { () throws(SystemError) in
                    try queue.writeFrame(headers: groupHeaders, payloads: payloads, header: header)
                }
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
    }

    /// Writes one packet as it is.
    private mutating func emit(_ packet: Span<UInt8>) throws(SystemError) {
        let queue = queues[FlowSteering.queue(for: packet, queues: queues.count)]
        try counting(packets: 1, bytes: packet.count, on: queue) { () throws(SystemError) in try queue.writeFrame(packet, header: .plain) }
    }

    /// Runs one write of `packets` packets (`bytes` in all) and counts it as written or failed;
    /// rethrows only when the device is gone, not when it is down.
    private mutating func counting(
        packets: Int, bytes: Int, on queue: any TunQueue,
        _ write: () throws(SystemError) -> Void
    ) throws(SystemError) {
        do {
            try write()
            counts.written += packets
            counts.writtenBytes += bytes
        } catch {
            counts.failed += packets
            if presence.isGone(queue, after: error) { throw error }
        }
    }
}
