/// How the engine tells the operator what happened off the data plane (paths down, addresses
/// changed), without knowing a logging library: two closures, as wireguard-go's `device.Logger`.
/// The CLI layer makes one from its logger; tests pass one that records.
public struct EngineLog: Sendable {
    public var info: @Sendable (String) -> Void
    public var warning: @Sendable (String) -> Void

    public init(info: @escaping @Sendable (String) -> Void, warning: @escaping @Sendable (String) -> Void) {
        self.info = info
        self.warning = warning
    }

    /// Says nothing.
    public static let silent = EngineLog(info: { _ in }, warning: { _ in })
}
