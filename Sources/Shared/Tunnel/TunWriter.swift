/// Writes validated inner packets to a TUN device. On a device with virtio-net headers it coalesces
/// consecutive packets of a TCP flow (and of a UDP flow, where the device takes UDP GSO) into one
/// super-packet per write (`SegmentCoalescer`); otherwise it writes packet by packet. Call `flush` at
/// the end of every batch so nothing waits. A struct, so that the coalescer's state is updated in
/// place without a dynamic exclusivity check per packet (its owner holds it in a struct too).
public struct TunWriter {
    /// Where packets and coalesced groups go: the device, or (in tests and the fuzzer) a collector.
    public typealias Output = (_ packet: Span<UInt8>, _ header: VirtioNetHeader) throws(SystemError) -> Void

    public let coalesces: Bool
    private let output: Output
    private let buffer: PacketBatch
    private var coalescer: SegmentCoalescer

    public init(coalesce: Bool, coalesceUDP: Bool, output: @escaping Output) {
        coalesces = coalesce
        self.output = output
        coalescer = SegmentCoalescer(coalescesUDP: coalesceUDP)
        buffer = PacketBatch(slotCount: 1, slotSize: SegmentCoalescer.maximumLength + IPPacket.ipv6HeaderLength)
    }

    /// Writes through the queues of one device (all opened alike); with several, each flow goes
    /// through the queue `FlowSteering` picks for it (a coalesced group is one flow).
    public init(queues: [TunDevice], coalesce: Bool) {
        self.init(coalesce: coalesce && queues[0].hasVirtioHeaders, coalesceUDP: queues[0].acceptsUDPSegmentation) {
            packet, header throws(SystemError) in
            try queues[FlowSteering.queue(for: packet, queues: queues.count)].write(packet, header: header)
        }
    }

    /// Queues or writes `packet`; counts it in `tally` once it is written (or failed).
    /// Throws only when the device is gone.
    public mutating func write(_ packet: Span<UInt8>, info: IPPacketInfo, tally: inout BatchTally) throws(SystemError) {
        if coalesces {
            let appended = buffer.withMutableSlot(0) { coalescer.append(packet, info: info, buffer: &$0) }
            if appended { return }
            try flush(tally: &tally)
            if coalescer.isCandidate(packet, info: info) {
                buffer.withMutableSlot(0) { coalescer.start(packet, info: info, buffer: &$0) }
                return
            }
        }
        try emit(packet, header: .plain, packets: 1, tally: &tally)
    }

    /// Writes the group being coalesced, if any.
    public mutating func flush(tally: inout BatchTally) throws(SystemError) {
        guard !coalescer.isEmpty else { return }
        let packets = coalescer.count
        let (length, header) = buffer.withMutableSlot(0) { coalescer.finish(buffer: &$0) }
        buffer.setRange(0..<length, of: 0)
        var failure: SystemError?
        buffer.withPacket(0) { group in
            do throws(SystemError) {
                try emit(group, header: header, packets: packets, tally: &tally)
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
    }

    private func emit(_ packet: Span<UInt8>, header: VirtioNetHeader, packets: Int, tally: inout BatchTally) throws(SystemError) {
        do {
            try output(packet, header)
            tally.tunWritten += packets
            tally.tunWrittenBytes += packet.count
        } catch {
            tally.drop(.tunWriteFailed, count: packets)
            if error.isDeviceGone { throw error }
        }
    }
}
