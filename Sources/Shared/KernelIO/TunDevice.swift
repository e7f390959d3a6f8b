import CLinux
import Glibc
import WireFormat

/// One queue of a TUN device as the TUN layer (`TunReader`, `TunWriter`) sees it: frames in and out,
/// each a packet preceded by a virtio-net header when `hasVirtioHeaders`. `TunDevice` is the real
/// one; TestSupport has an in-memory fake, so the offload handling is tested without root.
public protocol TunQueue: AnyObject, Sendable {
    var name: String { get }
    /// Readable when `readFrames` has frames.
    var readinessDescriptor: Int32 { get }
    /// True when every frame starts with a `VirtioNetHeader` (the kernel's offloads are on).
    var hasVirtioHeaders: Bool { get }
    /// True when the device also takes and gives UDP super-packets (USO, Linux 6.2+).
    var acceptsUDPSegmentation: Bool { get }
    /// False once the device no longer exists (deleted); a device that is down is present. Asked
    /// after a read or write failed (`TunPresence`).
    var isPresent: Bool { get }
    /// Reads frames into `slots` of `batch` (each at `offset` within its slot) until the device has no
    /// more or the slots are full, without waiting. Returns how many it read; throws when the device
    /// failed (gone: `SystemError.isDeviceGone`).
    func readFrames(into batch: PacketBatch, slots: Range<Int>, offset: Int) throws(SystemError) -> Int
    /// Writes one frame: `header` (on a device with virtio-net headers) then `packet`.
    func writeFrame(_ packet: Span<UInt8>, header: VirtioNetHeader) throws(SystemError)
    /// Writes one frame whose packet is `headers` followed by the payloads of `payloads`.
    func writeFrame(headers: Span<UInt8>, payloads: GatherList, header: VirtioNetHeader) throws(SystemError)
}

/// A Linux TUN device in IFF_TUN | IFF_NO_PI mode: each read returns one IP packet, each write injects one.
/// With offloads, the device also carries a virtio-net header per packet (IFF_VNET_HDR) and the kernel
/// hands over TCP super-packets of up to 64 KiB (TSO) and packets with checksums left to finish; the
/// TUN layer above it (`TunReader`, `TunWriter`) turns those into plain packets and back.
/// An instance is one queue: a multi-queue device (IFF_MULTI_QUEUE, `openQueues`) has one per
/// descriptor, and the kernel sends each flow to one of them.
public final class TunDevice: TunQueue {
    public let name: String
    private let descriptor: OwnedDescriptor
    var fd: Int32 { descriptor.rawValue }
    public var readinessDescriptor: Int32 { descriptor.rawValue }
    /// True when every read and write starts with a `VirtioNetHeader`.
    public let hasVirtioHeaders: Bool
    /// True when the device also takes and gives UDP super-packets (USO, Linux 6.2+).
    public let acceptsUDPSegmentation: Bool
    /// Why offloads are off when they were asked for (for the log); nil when on or not asked for.
    public let offloadRefusal: String?

    /// Why a device could not be opened or configured: what the kernel answered, as facts. The
    /// programs word the remedy (their flags, the deploy scripts): see CLI's `userMessage`.
    public enum Failure: Error, CustomStringConvertible, Sendable {
        /// /dev/net/tun does not exist, or no driver answers it.
        case noTunDriver
        /// /dev/net/tun exists but this process may not open it.
        case tunNodeNotAccessible
        /// The device could not be attached or created for lack of privilege.
        case permissionDenied(String)
        /// Another process holds the (single-queue) device.
        case busy(String)
        /// A device of that name exists but is not a TUN device of the kind asked for.
        case wrongKind(String, multiQueue: Bool)
        case badName(String)
        /// The device is attached, but changing it needs CAP_NET_ADMIN.
        case cannotConfigure(String, Change)
        case system(SystemError)

        /// A change to an attached device.
        public enum Change: Sendable, CustomStringConvertible {
            case setMTU(Int)
            case bringUp

            public var description: String {
                switch self {
                case let .setMTU(mtu): "set its MTU to \(mtu)"
                case .bringUp: "bring it up"
                }
            }
        }

        public var description: String {
            switch self {
            case .noTunDriver:
                "/dev/net/tun is missing"
            case .tunNodeNotAccessible:
                "no permission to open /dev/net/tun"
            case let .permissionDenied(name):
                "no permission to open or create TUN device \(name)"
            case let .busy(name):
                "TUN device \(name) is busy: another process has it open"
            case let .wrongKind(name, multiQueue: true):
                "\(name) exists but is not a multi-queue TUN device"
            case let .wrongKind(name, multiQueue: false):
                "\(name) exists but is not a single-queue TUN device"
            case let .cannotConfigure(name, change):
                "no permission to \(change) on \(name) (needs CAP_NET_ADMIN)"
            case let .badName(name):
                "invalid interface name '\(name)': 1 to 15 characters, no '/', ':' or spaces"
            case let .system(error):
                error.description
            }
        }

        /// Failures the operator must fix in the configuration (exit 78) rather than runtime faults.
        public var isConfiguration: Bool {
            switch self {
            case .system: false
            default: true
            }
        }
    }

    /// Opens `count` queues of the device `name` (one plain queue when `count` is 1). Every queue is
    /// attached with the flags the first one settled on: the kernel keeps one set per device, so a
    /// later queue asking for virtio-net headers would switch them on under the first.
    public static func openQueues(name: String, count: Int, offloads: Bool) throws(Failure) -> [TunDevice] {
        precondition(count >= 1, "a device needs at least one queue")
        let first = try TunDevice(name: name, offloads: offloads, multiQueue: count > 1)
        var queues = [first]
        for _ in 1..<count {
            queues.append(try TunDevice(name: first.name, offloads: first.hasVirtioHeaders, multiQueue: true))
        }
        return queues
    }

    /// Attaches to the persistent device `name`, or creates it (it then disappears when we exit).
    /// With `offloads`, asks for virtio-net headers with checksum and TCP segmentation offload, and
    /// falls back to plain packets if the kernel refuses.
    public init(name: String, offloads: Bool = false, multiQueue: Bool = false) throws(Failure) {
        let queueFlag = multiQueue ? CLINUX_IFF_MULTI_QUEUE : 0
        let plainFlags = CLINUX_IFF_TUN | CLINUX_IFF_NO_PI | queueFlag
        var refusal: String?
        if offloads {
            let attached = try Self.attach(name: name, flags: plainFlags | CLINUX_IFF_VNET_HDR)
            let descriptor = attached.descriptor, attachedName = attached.name
            let tcp = CLINUX_TUN_F_CSUM | CLINUX_TUN_F_TSO4 | CLINUX_TUN_F_TSO6
            // USO first; kernels before 6.2 refuse it with EINVAL, then TCP offloads alone.
            let withUDP = clinux_tun_set_offload(descriptor.rawValue, tcp | CLINUX_TUN_F_USO4 | CLINUX_TUN_F_USO6)
            let status = withUDP == 0 ? 0 : clinux_tun_set_offload(descriptor.rawValue, tcp)
            if status == 0 {
                self.descriptor = descriptor
                self.name = attachedName
                hasVirtioHeaders = true
                acceptsUDPSegmentation = withUDP == 0
                offloadRefusal = nil
                return
            }
            refusal = "TUNSETOFFLOAD: \(SystemError.Code(-status).message)"
            // `descriptor` closes here, before the device is attached again without headers.
        }
        let attached = try Self.attach(name: name, flags: plainFlags)
        descriptor = attached.descriptor
        self.name = attached.name
        hasVirtioHeaders = false
        acceptsUDPSegmentation = false
        offloadRefusal = refusal
    }

    private struct Attached: ~Copyable {
        var descriptor: OwnedDescriptor
        var name: String
    }

    private static func attach(name: String, flags: Int16) throws(Failure) -> Attached {
        guard !name.isEmpty, name.utf8.count < Int(CLINUX_IFNAMSIZ),
            !name.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace })
        else { throw .badName(name) }
        let descriptor: OwnedDescriptor
        do throws(SystemError) {
            descriptor = OwnedDescriptor(
                owning: try Syscall.call("open /dev/net/tun") { open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK) })
        } catch {
            switch error.code {
            case .noSuchFileOrDirectory, .noSuchAddressOrDevice, .noSuchDevice: throw .noTunDriver
            case .permissionDenied, .notPermitted: throw .tunNodeNotAccessible
            default: throw .system(error)
            }
        }
        var actualName = [CChar](repeating: 0, count: Int(CLINUX_IFNAMSIZ))
        let fd = descriptor.rawValue
        do throws(SystemError) {
            _ = try Syscall.shim("TUNSETIFF \(name)") { clinux_tun_set_iff(fd, name, flags, &actualName) }
        } catch {
            switch error.code {
            case .notPermitted, .permissionDenied: throw .permissionDenied(name)
            case .resourceBusy: throw .busy(name)
            case .invalidArgument: throw .wrongKind(name, multiQueue: flags & CLINUX_IFF_MULTI_QUEUE != 0)
            default: throw .system(error)
            }
        }
        return Attached(
            descriptor: descriptor,
            name: String(decoding: actualName.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    public var mtu: Int? {
        let value = clinux_if_get_mtu(name)
        return value > 0 ? Int(value) : nil
    }

    /// Sets the MTU unless it already has that value (so an unprivileged process can use a
    /// persistent device that was prepared for it).
    public func setMTU(_ mtu: Int) throws(Failure) {
        if self.mtu == mtu { return }
        do throws(SystemError) {
            _ = try Syscall.shim("set MTU \(mtu) on \(name)") { clinux_if_set_mtu(name, Int32(mtu)) }
        } catch  where error.code == .notPermitted || error.code == .permissionDenied {
            throw .cannotConfigure(name, .setMTU(mtu))
        } catch {
            throw .system(error)
        }
    }

    /// Brings the device up, then waits up to `timeout` seconds until the kernel reports it running;
    /// returns false if it did not (the caller warns).
    ///
    /// Why wait: attaching a queue turns the carrier on at once, but the kernel gives the device its
    /// queueing discipline later, from its link-watch work; until then whatever it routes into the
    /// device is dropped without an error. A generator or a reply sent in that window is lost (the
    /// TUN attach test shows it). The running flag is set in the same step as the queueing discipline.
    @discardableResult
    public func bringUp(timeout: Double = 2) throws(Failure) -> Bool {
        do throws(SystemError) {
            _ = try Syscall.shim("bring \(name) up") { clinux_if_set_up(name) }
        } catch  where error.code == .notPermitted || error.code == .permissionDenied {
            throw .cannotConfigure(name, .bringUp)
        } catch {
            throw .system(error)
        }
        let deadline = Clock.monotonicNanoseconds() + UInt64(timeout * 1e9)
        while true {
            let running: Int32
            do throws(SystemError) {
                running = try Syscall.shim("read the flags of \(name)") { clinux_if_is_running(name) }
            } catch {
                throw .system(error)
            }
            if running == 1 { return true }
            if Clock.monotonicNanoseconds() >= deadline { return false }
            Clock.sleep(nanoseconds: 100_000)
        }
    }

    public func readFrames(into batch: PacketBatch, slots: Range<Int>, offset: Int) throws(SystemError) -> Int {
        let fd = fd
        var filled = 0
        for slot in slots {
            let buffer = batch.rawSlot(slot, offset: offset)
            guard let length = try Syscall.nonBlocking("read from \(name)", { Glibc.read(fd, buffer.baseAddress, buffer.count) })
            else { break }
            // A read of 0 bytes from a TUN device means it is gone.
            if length == 0 { throw SystemError("read from \(name)", code: .ioError) }
            batch.setRange(offset..<(offset + length), of: slot)
            filled += 1
        }
        return filled
    }

    public func writeFrame(_ packet: Span<UInt8>, header: VirtioNetHeader) throws(SystemError) {
        let fd = fd
        var headerBytes = encodedHeader(header)
        _ = try packet.withUnsafeBytes { bytes throws(SystemError) in
            if hasVirtioHeaders {
                try withUnsafeBytes(of: &headerBytes) { head throws(SystemError) in
                    try Syscall.shim("write to \(name)") {
                        clinux_writev2(fd, head.baseAddress, UInt(VirtioNetHeader.length), bytes.baseAddress, UInt(bytes.count))
                    }
                }
            } else {
                try Syscall.call("write to \(name)") { Glibc.write(fd, bytes.baseAddress, bytes.count) }
            }
        }
    }

    public func writeFrame(headers: Span<UInt8>, payloads: GatherList, header: VirtioNetHeader) throws(SystemError) {
        let fd = fd
        var headerBytes = encodedHeader(header)
        _ = try withUnsafeBytes(of: &headerBytes) { head throws(SystemError) in
            let prefix = hasVirtioHeaders ? UnsafeRawBufferPointer(rebasing: head[0..<VirtioNetHeader.length]) : nil
            return try payloads.withVectors(prefix: prefix, headers: headers) { vectors, count throws(SystemError) in
                try Syscall.call("write to \(name)") { Glibc.writev(fd, vectors, Int32(count)) }
            }
        }
    }

    /// `header` in 10 bytes of stack storage (zero: a plain packet).
    private func encodedHeader(_ header: VirtioNetHeader) -> (UInt64, UInt16) {
        var headerBytes: (UInt64, UInt16) = (0, 0)
        if hasVirtioHeaders, header != .plain {
            withUnsafeMutableBytes(of: &headerBytes) { raw in
                var span = raw.bindMemory(to: UInt8.self).mutableSpan
                header.encode(into: &span)
            }
        }
        return headerBytes
    }
}
