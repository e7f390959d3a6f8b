import Engine
import KernelIO
import Logging

// KernelIO reports what the kernel answered; the remedy is worded here, in the programs' terms:
// their flags, the deploy scripts, the commands an operator runs.

extension TunDevice.Failure {
    /// The failure and its fix, as the programs print it.
    public var userMessage: String {
        switch self {
        case .noTunDriver:
            "\(self): load the driver (modprobe tun) or, in a container, pass the device in (--device /dev/net/tun)"
        case .tunNodeNotAccessible:
            "\(self): run as root or with CAP_NET_ADMIN; to run unprivileged, make it usable by everyone as distributions ship it (chmod 0666 /dev/net/tun; attaching still needs a persistent device you own: ip tuntap add dev NAME mode tun user $USER)"
        case let .permissionDenied(name):
            "\(self): run as root, grant CAP_NET_ADMIN (setcap cap_net_admin+ep BINARY), or create a persistent device you own: sudo ip tuntap add dev \(name) mode tun user $USER"
        case .busy:
            "\(self) (stop it, or choose another --tun)"
        case let .wrongKind(name, multiQueue: true):
            "\(self), which --queues above 1 needs (a TAP, or a single-queue TUN device?): recreate it with ip link del \(name); ip tuntap add dev \(name) mode tun multi_queue (deploy/host.sh does with TUN_QUEUES=N)"
        case let .wrongKind(name, multiQueue: false):
            "\(self) (a TAP, or a multi-queue device? pass --queues N for one, or delete it: ip link del \(name))"
        case let .cannotConfigure(name, _):
            "\(self): run as root, or prepare the device as root beforehand (deploy/host.sh does; ip link set \(name) mtu N up) and pass the same --mtu"
        case .badName, .system:
            description
        }
    }
}

extension Privileges.Failure {
    /// The failure in terms of `--user`, as the programs print it.
    public var userMessage: String {
        switch self {
        case let .unknownUser(name): "--user \(name): no such user"
        case .notRoot: "--user needs the process to start as root (it drops privileges after opening the device)"
        case .failed: description
        }
    }
}

extension UDPSocket.Features {
    /// The log line's features, with the fix when the receive buffer came out short.
    public var logDescription: String {
        let granted = isReceiveBufferShort ? " (asked \(requestedBufferBytes); raise net.core.rmem_max or run with CAP_NET_ADMIN)" : ""
        return "rcvbuf=\(receiveBufferBytes) sndbuf=\(sendBufferBytes)\(granted) drop_count=\(reportsDrops ? "on" : "off")"
    }
}

extension ForwardingCheck {
    /// The sysctls forwarding needs, set first when `fixing` (--fix-sysctl, each change logged); any
    /// still wrong stops the start with the exact commands to run.
    public func requireReady(fixing: Bool, logger: Logger) throws {
        if fixing {
            for change in try fix() { logger.notice("sysctl changed: \(change)") }
        }
        let findings = failures()
        guard findings.isEmpty else {
            let lines = findings.map { "  \($0)" }.joined(separator: "\n")
            throw UserFacingError(
                "the kernel is not set up to forward what this relay injects:\n\(lines)\n(or run with --fix-sysctl)",
                exitCode: ExitStatus.configuration)
        }
    }
}
