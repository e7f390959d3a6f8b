import KernelIO

/// The kernel settings a relay needs before it injects packets for forwarding, and how to fix each.
public struct ForwardingCheck: Sendable {
    public struct Finding: Sendable, Equatable, CustomStringConvertible {
        /// The key whose value is wrong.
        public var key: SysctlKey
        public var value: Int?
        public var needed: String
        /// What to write, and where, to fix it.
        public var fixKey: SysctlKey
        public var fixValue: Int
        public var why: String

        public var fixCommand: String { "sysctl -w \(fixKey)=\(fixValue)" }

        public var description: String {
            "\(key) = \(value.map(String.init) ?? "missing"), needs \(needed): \(why); fix: \(fixCommand)"
        }
    }

    public let sysctl: Sysctl
    public let tunName: String
    public let forwardIPv6: Bool

    public init(sysctl: Sysctl = Sysctl(), tunName: String, forwardIPv6: Bool) {
        self.sysctl = sysctl
        self.tunName = tunName
        self.forwardIPv6 = forwardIPv6
    }

    public static let ipForward = SysctlKey("net", "ipv4", "ip_forward")
    public static let ipv6Forwarding = SysctlKey.interface("ipv6", "all", "forwarding")
    public static let allRPFilter = SysctlKey.interface("ipv4", "all", "rp_filter")
    public static let defaultRPFilter = SysctlKey.interface("ipv4", "default", "rp_filter")
    public func tunRPFilter() -> SysctlKey { .interface("ipv4", tunName, "rp_filter") }

    /// Everything that is wrong now; empty when the relay may forward.
    public func failures() -> [Finding] {
        var findings: [Finding] = []
        let forward = sysctl.read(Self.ipForward)
        if forward != 1 {
            findings.append(
                Finding(
                    key: Self.ipForward, value: forward, needed: "1", fixKey: Self.ipForward, fixValue: 1,
                    why: "the kernel will not forward packets written to \(tunName)"))
        }
        // The kernel applies max(conf.all.rp_filter, conf.<dev>.rp_filter); 1 (strict) drops packets
        // whose source is routed out another interface. Setting the device to 2 (loose) wins over
        // all=1 because 2 is the larger, and leaves other interfaces alone.
        let all = sysctl.read(Self.allRPFilter) ?? 0
        // A device that does not exist yet (--check before the relay creates it) will start with
        // conf.default's value.
        let deviceKey = sysctl.read(tunRPFilter()) != nil ? tunRPFilter() : Self.defaultRPFilter
        let device = sysctl.read(deviceKey) ?? 0
        if max(all, device) == 1 {
            let culprit = device == 1 ? deviceKey : Self.allRPFilter
            let note = deviceKey == tunRPFilter() ? "" : " (\(tunName) does not exist yet and will inherit conf.default)"
            findings.append(
                Finding(
                    key: culprit, value: 1, needed: "0 or 2 (effective value is max(conf.all, conf.\(tunName)))",
                    fixKey: deviceKey, fixValue: 2,
                    why: "strict reverse-path filtering drops packets arriving on \(tunName) from sources routed elsewhere\(note)"))
        }
        if forwardIPv6 {
            let v6 = sysctl.read(Self.ipv6Forwarding)
            if v6 != 1 {
                findings.append(
                    Finding(
                        key: Self.ipv6Forwarding, value: v6, needed: "1", fixKey: Self.ipv6Forwarding, fixValue: 1,
                        why: "inner IPv6 packets will not be forwarded"))
            }
        }
        return findings
    }

    /// Applies every fix; returns "key: old → new" lines for the log.
    public func fix() throws -> [String] {
        var changes: [String] = []
        for finding in failures() {
            let before = sysctl.read(finding.fixKey)
            try sysctl.write(finding.fixKey, finding.fixValue)
            changes.append("\(finding.fixKey): \(before.map(String.init) ?? "missing") → \(finding.fixValue)")
        }
        return changes
    }
}
