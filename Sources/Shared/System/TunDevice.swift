import CLinux
import Glibc

/// A Linux TUN device in IFF_TUN | IFF_NO_PI mode: each read returns one IP packet, each write injects one.
public final class TunDevice: Sendable {
    public let name: String
    let fd: Int32

    public enum Failure: Error, CustomStringConvertible, Sendable {
        case noTunDriver
        case permissionDenied(String)
        case busy(String)
        case wrongKind(String)
        case badName(String)
        case system(SystemError)

        public var description: String {
            switch self {
            case .noTunDriver:
                "/dev/net/tun is missing: load the driver (modprobe tun) or, in a container, pass the device in (--device /dev/net/tun)"
            case let .permissionDenied(name):
                "no permission to open or create TUN device \(name): run as root, grant CAP_NET_ADMIN (setcap cap_net_admin+ep BINARY), or create a persistent device you own: sudo ip tuntap add dev \(name) mode tun user $USER"
            case let .busy(name):
                "TUN device \(name) is busy: another process has it open (stop it, or choose another --tun)"
            case let .wrongKind(name):
                "\(name) exists but is not a single-queue TUN device (is it a TAP or multi-queue device? delete it: ip link del \(name))"
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

    /// Attaches to the persistent device `name`, or creates it (it then disappears when we exit).
    public init(name: String) throws(Failure) {
        guard !name.isEmpty, name.utf8.count < Int(CLINUX_IFNAMSIZ),
              !name.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace }) else { throw .badName(name) }
        let fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            let code = clinux_errno()
            switch code {
            case ENOENT, ENXIO, ENODEV: throw .noTunDriver
            case EACCES, EPERM: throw .permissionDenied(name)
            default: throw .system(SystemError("open /dev/net/tun", code: code))
            }
        }
        var actualName = [CChar](repeating: 0, count: Int(CLINUX_IFNAMSIZ))
        let status = clinux_tun_set_iff(fd, name, CLINUX_IFF_TUN | CLINUX_IFF_NO_PI, &actualName)
        if status < 0 {
            close(fd)
            switch -status {
            case EPERM, EACCES: throw .permissionDenied(name)
            case EBUSY: throw .busy(name)
            case EINVAL: throw .wrongKind(name)
            default: throw .system(SystemError("TUNSETIFF \(name)", code: -status))
            }
        }
        self.fd = fd
        self.name = String(decoding: actualName.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit { close(fd) }

    public var mtu: Int? {
        let value = clinux_if_get_mtu(name)
        return value > 0 ? Int(value) : nil
    }

    public func setMTU(_ mtu: Int) throws(SystemError) {
        let status = clinux_if_set_mtu(name, Int32(mtu))
        if status < 0 { throw SystemError("set MTU \(mtu) on \(name)", code: -status) }
    }

    public func bringUp() throws(SystemError) {
        let status = clinux_if_set_up(name)
        if status < 0 { throw SystemError("bring \(name) up", code: -status) }
    }

    /// Reads packets into slots 0..<n (at `headroom` within each slot) until the device has no more or
    /// the batch is full, waiting up to `timeoutMilliseconds` for the first. Returns n.
    public func read(into batch: PacketBatch, headroom: Int, waker: Waker?, timeoutMilliseconds: Int32) throws(SystemError) -> Int {
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
            if length < 0, code == EAGAIN {
                if filled > 0 { break }
                guard waitFor(fd, events: Int16(POLLIN), waker: waker, timeoutMilliseconds: timeoutMilliseconds) == .ready else { break }
                continue
            }
            batch.setCount(filled)
            // EBADFD/EIO: the device was deleted under us.
            throw SystemError("read from \(name)", code: length == 0 ? EIO : code)
        }
        batch.setCount(filled)
        return filled
    }

    /// Writes one packet (the slot's range) to the kernel.
    public func write(_ batch: PacketBatch, slot: Int) throws(SystemError) {
        let packet = batch.rawPacket(slot)
        while true {
            let written = Glibc.write(fd, packet.baseAddress, packet.count)
            if written >= 0 { return }
            let code = clinux_errno()
            if code == EINTR { continue }
            throw SystemError("write to \(name)", code: code)
        }
    }
}
