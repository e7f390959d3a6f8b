import ArgumentParser
import Logging
import Engine
import Measurement
import KernelIO
import WireFormat

/// `--offload`: the kernel offloads the data plane uses (client and relay).
public struct OffloadOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Kernel offloads: TUN TSO/checksum with virtio-net headers, UDP GSO and GRO. Each is probed at start and left off where the kernel refuses it.",
        valueName: "on|off"))
    public var offload: String = "on"

    public init() {}

    public func validate() throws {
        guard offload == "on" || offload == "off" else { throw ValidationError("--offload must be 'on' or 'off'") }
    }

    public var enabled: Bool { offload == "on" }

    /// Turns on what the sockets (one per queue) support and logs what is in use. Returns each
    /// offload by name and whether it is on (for metrics).
    @discardableResult
    public func apply(to sockets: [UDPSocket], tun: TunDevice, logger: Logger) -> [(feature: String, on: Bool)] {
        logger.info("socket", metadata: ["features": "\(sockets[0].features)"])
        guard enabled else {
            logger.info("offloads off (--offload off): one packet per TUN read and write")
            return Self.names.map { ($0, false) }
        }
        let gso = sockets.map { $0.enableSegmentation() }.allSatisfy { $0 }
        let gro = sockets.map { $0.enableCoalescing() }.allSatisfy { $0 }
        let tunState = tun.hasVirtioHeaders ? "on" : "off (\(tun.offloadRefusal ?? "refused"))"
        let usoState = tun.acceptsUDPSegmentation ? "on" : "off (needs Linux 6.2+)"
        logger.info("offloads", metadata: [
            "tun_tso_csum": "\(tunState)", "tun_uso": "\(usoState)", "udp_gso": "\(gso ? "on" : "off (unsupported)")",
            "udp_gro": "\(gro ? "on" : "off (unsupported)")"])
        return zip(Self.names, [tun.hasVirtioHeaders, tun.acceptsUDPSegmentation, gso, gro]).map { ($0, $1) }
    }

    static let names = ["tun_tso_csum", "tun_uso", "udp_gso", "udp_gro"]
}
