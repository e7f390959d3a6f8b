/// A kernel parameter named as `sysctl` prints it. Interface names may contain dots, which sysctl
/// writes as '/', so keys are built from components rather than split on '.'.
public struct SysctlKey: Hashable, Sendable, CustomStringConvertible {
    public let components: [String]

    public init(_ components: String...) { self.components = components }

    public static func interface(_ family: String, _ interface: String, _ name: String) -> SysctlKey {
        SysctlKey("net", family, "conf", interface, name)
    }

    public var description: String {
        components.map { String($0.map { $0 == "." ? "/" : $0 }) }.joined(separator: ".")
    }
}

/// Reads and writes kernel parameters through /proc/sys.
public struct Sysctl: Sendable {
    public let root: String

    /// `root` is replaceable so tests can point it at a fake tree.
    public init(root: String = "/proc/sys") { self.root = root }

    public func path(of key: SysctlKey) -> String { ([root] + key.components).joined(separator: "/") }

    public func read(_ key: SysctlKey) -> Int? {
        guard let text = TextFile.read(path(of: key)) else { return nil }
        return Int(text.filter { !$0.isWhitespace })
    }

    public func write(_ key: SysctlKey, _ value: Int) throws(SystemError) {
        try TextFile.write(path(of: key), "\(value)\n")
    }
}
