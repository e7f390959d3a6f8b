/// Chooses which queue of a multi-queue TUN device a packet is written through, by its flow.
///
/// The kernel remembers which queue last wrote a flow and sends the flow's packets the other way
/// out through that same queue (the TUN driver's automatic flow steering). If a tunnel endpoint
/// wrote every packet through the queue of the socket that received it, every flow from one peer
/// would be learned onto that one queue; writing each flow through a queue chosen by its own hash
/// spreads the flows, and keeps each flow on one queue in both directions.
public enum FlowSteering {
    /// A queue index in `0..<queues` from the addresses, the protocol and, for TCP and UDP, the
    /// ports (not for fragments, which carry no ports after the first). Packets that are not IP go
    /// to queue 0; every packet of one flow goes to the same queue.
    public static func queue(for packet: Span<UInt8>, queues: Int) -> Int {
        guard queues > 1, packet.count >= IPPacket.ipv4MinimumHeaderLength else { return 0 }
        let addresses: Range<Int>
        let transportProtocol: UInt8
        var transportOffset: Int?
        switch packet[0] >> 4 {
        case 4:
            addresses = 12..<20
            transportProtocol = packet[9]
            let isFragment = packet.u16(at: 6) & 0x3fff != 0  // MF or an offset
            if !isFragment { transportOffset = Int(packet[0] & 0x0f) * 4 }
        case 6 where packet.count >= IPPacket.ipv6HeaderLength:
            addresses = 8..<40
            transportProtocol = packet[6]
            transportOffset = IPPacket.ipv6HeaderLength
        default:
            return 0
        }
        // FNV-1a: a few dozen bytes per write, no table, no allocation.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        for index in addresses { mix(packet[index]) }
        mix(transportProtocol)
        if transportProtocol == IPProtocolNumber.tcp || transportProtocol == IPProtocolNumber.udp,
            let offset = transportOffset, offset + 4 <= packet.count
        {
            for index in offset..<(offset + 4) { mix(packet[index]) }
        }
        // FNV-1a's low bits are weak (bit 0 is the parity of the bytes' low bits, and Linux gives
        // connect() even ports): finish with MurmurHash3's mixer, then scale the high half.
        hash ^= hash >> 33
        hash &*= 0xff51_afd7_ed55_8ccd
        hash ^= hash >> 33
        hash &*= 0xc4ce_b9fe_1a85_ec53
        hash ^= hash >> 33
        return Int(((hash >> 32) &* UInt64(queues)) >> 32)  // Swift: >> binds tighter than &*
    }
}
