import KernelIO
import WireFormat

/// Which wall clock a generator payload was stamped with, so the sink shows one-way latency only
/// when the difference of two times means something. The id is a 16-bit hash of the kernel's boot
/// id: one value per running kernel, the same in every namespace and container of a host (they all
/// read one CLOCK_REALTIME), another on another host or after a reboot. Two hosts share an id by
/// chance once in 65,535; 0 (`ProbePayload.unknownClock`) means the sender did not say.
public enum ClockIdentity {
    public static let bootIDPath = "/proc/sys/kernel/random/boot_id"

    /// This host's clock id; `ProbePayload.unknownClock` when the boot id cannot be read.
    public static func local(bootIDPath: String = bootIDPath) -> UInt16 {
        guard let text = TextFile.read(bootIDPath, limit: 128) else { return ProbePayload.unknownClock }
        return identity(bootID: text)
    }

    /// The id of a boot id (surrounding white space ignored): FNV-1a folded to 16 bits, never 0.
    public static func identity(bootID: String) -> UInt16 {
        let trimmed = bootID.utf8.drop { $0 == 0x20 || $0 == 0x0A || $0 == 0x09 }.reversed().drop {
            $0 == 0x20 || $0 == 0x0A || $0 == 0x09
        }
        guard !trimmed.isEmpty else { return ProbePayload.unknownClock }
        var hash: UInt32 = 0x811C_9DC5
        for byte in trimmed.reversed() {
            hash ^= UInt32(byte)
            hash &*= 0x0100_0193
        }
        let folded = UInt16(truncatingIfNeeded: hash >> 16) ^ UInt16(truncatingIfNeeded: hash)
        return folded == ProbePayload.unknownClock ? 1 : folded
    }

    /// Whether the sink may take a payload's send time against its own receive time: the sender
    /// said it uses the sink's clock, or the operator said the clocks are synchronised.
    public static func comparable(sender: UInt16, sink: UInt16, synchronised: Bool) -> Bool {
        synchronised || (sender != ProbePayload.unknownClock && sender == sink)
    }
}
