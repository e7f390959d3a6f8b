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
/// (`SegmentCoalescer`); otherwise it writes packet by packet. Call `flush` at the end of every batch
/// so nothing waits. A struct, so that the coalescer's state is updated in place without a dynamic
/// exclusivity check per packet (its owner holds it in a struct too).
public struct TunWriter {
    public let coalesces: Bool
    /// Every queue of the device: with several, each flow goes through the queue `FlowSteering`
    /// picks for it (a coalesced group is one flow), not the writer's own.
    private let queues: [any TunQueue]
    private let buffer: PacketBatch
    private var coalescer: SegmentCoalescer
    private var counts = TunWriteCounts()

    /// `coalesce` asks for coalescing; it is on only where the device takes virtio-net headers.
    public init(queues: [any TunQueue], coalesce: Bool = true) {
        precondition(!queues.isEmpty, "a writer needs a queue")
        self.queues = queues
        coalesces = coalesce && queues[0].hasVirtioHeaders
        coalescer = SegmentCoalescer(coalescesUDP: queues[0].acceptsUDPSegmentation)
        buffer = PacketBatch(slotCount: 1, slotSize: SegmentCoalescer.maximumLength + IPPacket.ipv6HeaderLength)
    }

    public var name: String { queues[0].name }

    /// The counts since the last call, which resets them.
    public mutating func takeCounts() -> TunWriteCounts {
        defer { counts = TunWriteCounts() }
        return counts
    }

    /// Queues or writes `packet`. Throws only when the device is gone.
    public mutating func write(_ packet: Span<UInt8>, info: IPPacketInfo) throws(SystemError) {
        if coalesces {
            let appended = buffer.withMutableSlot(0) { coalescer.append(packet, info: info, buffer: &$0) }
            if appended { return }
            try flush()
            if coalescer.isCandidate(packet, info: info) {
                buffer.withMutableSlot(0) { coalescer.start(packet, info: info, buffer: &$0) }
                return
            }
        }
        try emit(packet, header: .plain, packets: 1)
    }

    /// Writes the group being coalesced, if any.
    public mutating func flush() throws(SystemError) {
        guard !coalescer.isEmpty else { return }
        let packets = coalescer.count
        let (length, header) = buffer.withMutableSlot(0) { coalescer.finish(buffer: &$0) }
        buffer.setRange(0..<length, of: 0)
        var failure: SystemError?
        buffer.withPacket(0) { group in
            do throws(SystemError) {
                try emit(group, header: header, packets: packets)
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
    }

    private mutating func emit(_ packet: Span<UInt8>, header: VirtioNetHeader, packets: Int) throws(SystemError) {
        do {
            try queues[FlowSteering.queue(for: packet, queues: queues.count)].writeFrame(packet, header: header)
            counts.written += packets
            counts.writtenBytes += packet.count
        } catch {
            counts.failed += packets
            if error.isDeviceGone { throw error }
        }
    }
}
