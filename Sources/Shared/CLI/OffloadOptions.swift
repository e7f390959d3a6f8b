import ArgumentParser
import KernelIO
import Logging

/// `--offload`: the kernel offloads the data plane uses (client and relay).
public struct OffloadOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
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
        logger.info("socket", metadata: ["features": "\(sockets[0].features.logDescription)"])
        guard enabled else {
            logger.info("offloads off (--offload off): one packet per TUN read and write")
            return Self.names.map { ($0, false) }
        }
        let gso = sockets.map { $0.enableUDPGSO() }.allSatisfy { $0 }
        let gro = sockets.map { $0.enableUDPGRO() }.allSatisfy { $0 }
        // Each offload by name, whether it is on, and why not; the log line and the result both from it.
        let states = zip(
            Self.names,
            [
                (tun.hasVirtioHeaders, tun.offloadRefusal ?? "refused"), (tun.acceptsUDPSegmentation, "needs Linux 6.2+"),
                (gso, "unsupported"), (gro, "unsupported")
            ])
        logger.info(
            "offloads",
            metadata: Logger.Metadata(
                uniqueKeysWithValues: states.map { name, state in
                    (name, .string(state.0 ? "on" : "off (\(state.1))"))
                }))
        return states.map { ($0, $1.0) }
    }

    static let names = ["tun_tso_csum", "tun_uso", "udp_gso", "udp_gro"]
}
