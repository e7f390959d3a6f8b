import CLinux
import Glibc

/// A Linux TUN device in IFF_TUN | IFF_NO_PI mode: each read returns one IP packet, each write injects one.
/// With offloads, the device also carries a virtio-net header per packet (IFF_VNET_HDR) and the kernel
/// hands over TCP super-packets of up to 64 KiB (TSO) and packets with checksums left to finish.
/// An instance is one queue: a multi-queue device (IFF_MULTI_QUEUE, `openQueues`) has one per
/// descriptor, and the kernel sends each flow to one of them.
public final class TunDevice: Sendable {
    public let name: String
    let fd: Int32
    /// True when every read and write starts with a `VirtioNetHeader`.
    public let hasVirtioHeaders: Bool
    /// True when the device also takes and gives UDP super-packets (USO, Linux 6.2+).
    public let acceptsUDPSegmentation: Bool
    /// Why offloads are off when they were asked for (for the log); nil when on or not asked for.
    public let offloadRefusal: String?

    public enum Failure: Error, CustomStringConvertible, Sendable {
        case noTunDriver
        case tunNodeNotAccessible
        case permissionDenied(String)
        case busy(String)
        case wrongKind(String, multiQueue: Bool)
        case badName(String)
        case cannotConfigure(String, String)
        case system(SystemError)

        public var description: String {
            switch self {
            case .noTunDriver:
                "/dev/net/tun is missing: load the driver (modprobe tun) or, in a container, pass the device in (--device /dev/net/tun)"
            case .tunNodeNotAccessible:
                "no permission to open /dev/net/tun: run as root or with CAP_NET_ADMIN; to run unprivileged, make it usable by everyone as distributions ship it (chmod 0666 /dev/net/tun; attaching still needs a persistent device you own: ip tuntap add dev NAME mode tun user $USER)"
            case let .permissionDenied(name):
                "no permission to open or create TUN device \(name): run as root, grant CAP_NET_ADMIN (setcap cap_net_admin+ep BINARY), or create a persistent device you own: sudo ip tuntap add dev \(name) mode tun user $USER"
            case let .busy(name):
                "TUN device \(name) is busy: another process has it open (stop it, or choose another --tun)"
            case let .wrongKind(name, multiQueue: true):
                "\(name) exists but is not a multi-queue TUN device, which --queues above 1 needs (a TAP, or a single-queue TUN device?): recreate it with ip link del \(name); ip tuntap add dev \(name) mode tun multi_queue (deploy/host.sh does with TUN_QUEUES=N)"
            case let .wrongKind(name, multiQueue: false):
                "\(name) exists but is not a single-queue TUN device (a TAP, or a multi-queue device? pass --queues N for one, or delete it: ip link del \(name))"
            case let .cannotConfigure(name, what):
                "no permission to \(what) on \(name) (needs CAP_NET_ADMIN): run as root, or prepare the device as root beforehand (deploy/host.sh does; ip link set \(name) mtu N up) and pass the same --mtu"
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
        if offloads {
            let fd = try Self.attach(name: name, flags: CLINUX_IFF_TUN | CLINUX_IFF_NO_PI | CLINUX_IFF_VNET_HDR | queueFlag)
            let tcp = CLINUX_TUN_F_CSUM | CLINUX_TUN_F_TSO4 | CLINUX_TUN_F_TSO6
            // USO first; kernels before 6.2 refuse it with EINVAL, then TCP offloads alone.
            let withUDP = clinux_tun_set_offload(fd.fd, tcp | CLINUX_TUN_F_USO4 | CLINUX_TUN_F_USO6)
            let status = withUDP == 0 ? 0 : clinux_tun_set_offload(fd.fd, tcp)
            if status == 0 {
                self.fd = fd.fd
                self.name = fd.name
                hasVirtioHeaders = true
                acceptsUDPSegmentation = withUDP == 0
                offloadRefusal = nil
                return
            }
            close(fd.fd)
            let (plain, plainName) = try Self.attach(name: name, flags: CLINUX_IFF_TUN | CLINUX_IFF_NO_PI | queueFlag)
            self.fd = plain
            self.name = plainName
            hasVirtioHeaders = false
            acceptsUDPSegmentation = false
            offloadRefusal = "TUNSETOFFLOAD: \(SystemError("", code: -status).message)"
            return
        }
        let (plain, plainName) = try Self.attach(name: name, flags: CLINUX_IFF_TUN | CLINUX_IFF_NO_PI | queueFlag)
        fd = plain
        self.name = plainName
        hasVirtioHeaders = false
        acceptsUDPSegmentation = false
        offloadRefusal = nil
    }

    private static func attach(name: String, flags: Int16) throws(Failure) -> (fd: Int32, name: String) {
        guard !name.isEmpty, name.utf8.count < Int(CLINUX_IFNAMSIZ),
              !name.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace }) else { throw .badName(name) }
        let fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            let code = clinux_errno()
            switch code {
            case ENOENT, ENXIO, ENODEV: throw .noTunDriver
            case EACCES, EPERM: throw .tunNodeNotAccessible
            default: throw .system(SystemError("open /dev/net/tun", code: code))
            }
        }
        var actualName = [CChar](repeating: 0, count: Int(CLINUX_IFNAMSIZ))
        let status = clinux_tun_set_iff(fd, name, flags, &actualName)
        if status < 0 {
            close(fd)
            switch -status {
            case EPERM, EACCES: throw .permissionDenied(name)
            case EBUSY: throw .busy(name)
            case EINVAL: throw .wrongKind(name, multiQueue: flags & CLINUX_IFF_MULTI_QUEUE != 0)
            default: throw .system(SystemError("TUNSETIFF \(name)", code: -status))
            }
        }
        return (fd, String(decoding: actualName.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    deinit { close(fd) }

    public var mtu: Int? {
        let value = clinux_if_get_mtu(name)
        return value > 0 ? Int(value) : nil
    }

    /// Sets the MTU unless it already has that value (so an unprivileged process can use a
    /// persistent device that was prepared for it).
    public func setMTU(_ mtu: Int) throws(Failure) {
        if self.mtu == mtu { return }
        let status = clinux_if_set_mtu(name, Int32(mtu))
        if status == -EPERM || status == -EACCES { throw .cannotConfigure(name, "set its MTU to \(mtu)") }
        if status < 0 { throw .system(SystemError("set MTU \(mtu) on \(name)", code: -status)) }
    }

    /// Brings the device up, then waits up to `timeout` seconds until the kernel reports it running;
    /// returns false if it did not (the caller warns).
    ///
    /// Why wait: attaching a queue turns the carrier on at once, but the kernel gives the device its
    /// queueing discipline later, from its link-watch work; until then whatever it routes into the
    /// device is dropped without an error. A generator or a reply sent in that window is lost
    /// (measured with a persistent device re-attached 3,000 times: 57 first packets lost, none after
    /// this wait). The running flag is set in the same step as the queueing discipline.
    @discardableResult
    public func bringUp(timeout: Double = 2) throws(Failure) -> Bool {
        let status = clinux_if_set_up(name)
        if status == -EPERM || status == -EACCES { throw .cannotConfigure(name, "bring it up") }
        if status < 0 { throw .system(SystemError("bring \(name) up", code: -status)) }
        let deadline = Clock.monotonicNanoseconds() + UInt64(timeout * 1e9)
        while true {
            let running = clinux_if_is_running(name)
            if running < 0 { throw .system(SystemError("read the flags of \(name)", code: -running)) }
            if running == 1 { return true }
            if Clock.monotonicNanoseconds() >= deadline { return false }
            Clock.sleep(nanoseconds: 100_000)
        }
    }

    /// Reads packets into slots 0..<n (at `headroom` within each slot) until the device has no more or
    /// the batch is full, without waiting (the caller polls the descriptor). Returns n, 0 when none.
    public func read(into batch: PacketBatch, headroom: Int) throws(SystemError) -> Int {
        var filled = 0
        while filled < batch.slotCount {
            let buffer = batch.rawSlot(filled, offset: headroom)
            let length = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if length > 0 {
                batch.setRange(headroom..<(headroom + length), of: filled)
                filled += 1
                continue
            }
            let code = clinux_errno()
            if length < 0, code == EINTR { continue }
            if length < 0, code == EAGAIN { break }
            batch.setCount(filled)
            // EBADFD/EIO: the device was deleted under us.
            throw SystemError("read from \(name)", code: length == 0 ? EIO : code)
        }
        batch.setCount(filled)
        return filled
    }

    /// Writes one packet to the kernel, preceded by `header` on a device with virtio-net headers.
    public func write(_ packet: Span<UInt8>, header: VirtioNetHeader = .plain) throws(SystemError) {
        var headerBytes: (UInt64, UInt16) = (0, 0)  // 10 bytes of stack storage
        if hasVirtioHeaders, header != .plain {
            withUnsafeMutableBytes(of: &headerBytes) { raw in
                var span = raw.bindMemory(to: UInt8.self).mutableSpan
                header.encode(into: &span)
            }
        }
        while true {
            let written: Int = packet.withUnsafeBytes { bytes in
                if hasVirtioHeaders {
                    return withUnsafeBytes(of: &headerBytes) { head in
                        clinux_writev2(fd, head.baseAddress, UInt(VirtioNetHeader.length), bytes.baseAddress, UInt(bytes.count))
                    }
                }
                let count = Glibc.write(fd, bytes.baseAddress, bytes.count)
                return count >= 0 ? count : -Int(clinux_errno())
            }
            if written >= 0 { return }
            if -written == Int(EINTR) { continue }
            throw SystemError("write to \(name)", code: Int32(-written))
        }
    }
}
