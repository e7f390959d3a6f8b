import ArgumentParser
import Engine
import KernelIO
import Logging
import WireFormat

/// `--key-file` and `--encrypt`: raw framing, or authenticated (optionally encrypted) framing.
public struct KeyOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Shared key (32 random bytes, base64; udptun-relay --genkey prints one). Every datagram is then authenticated and replays are dropped. Without it: raw framing, unauthenticated.",
            valueName: "PATH"))
    public var keyFile: String?

    @Flag(help: "With --key-file: also encrypt the inner packets (with --cipher).")
    public var encrypt = false

    @Option(
        help: ArgumentHelp(
            "With --encrypt: the AEAD this end seals with, chacha20-poly1305 (the default; fast on any CPU) or aes-256-gcm (about three times faster where the CPU has AES instructions, much slower where not). Each end chooses for itself and opens both.",
            valueName: "NAME"))
    public var cipher: AEADCipher?

    public init() {}

    public func validate() throws {
        if cipher != nil, !encrypt { throw ValidationError("--cipher needs --encrypt") }
    }

    /// The chosen framing, with its keys loaded: raw without any; authenticated with the
    /// `--key-file` key first, then `clientKeyFiles` (the relay's `--client-key`s, in order, so a
    /// key's index names its client). Pass it to a generic function so the data plane is specialised
    /// for the concrete type. (`--encrypt` without a key is each command's usage error.)
    public func make(logger: Logger, clientKeyFiles: [String] = []) throws -> any Framing {
        let paths = (keyFile.map { [$0] } ?? []) + clientKeyFiles
        guard !paths.isEmpty else { return RawFraming() }
        let keys = try paths.map { try Self.loadKey($0, logger: logger) }
        if let (first, second) = AuthenticatedFraming.clashingKeys(keys) {
            throw UserFacingError(
                paths[first] == paths[second]
                    ? "key file \(paths[first]) is given twice"
                    : "key files \(paths[first]) and \(paths[second]) have the same key id (the same key, or 1 chance in 65,536): give one of them a new key (udptun-relay --genkey)",
                exitCode: ExitStatus.configuration)
        }
        return AuthenticatedFraming(keys: keys, encrypt: encrypt, cipher: cipher ?? .chacha20Poly1305)
    }

    static func loadKey(_ path: String, logger: Logger) throws -> TunnelKey {
        guard let text = TextFile.read(path) else {
            throw UserFacingError(
                "cannot read key file \(path) (create one: udptun-relay --genkey > \(path); chmod 600 \(path))",
                exitCode: ExitStatus.configuration)
        }
        guard let key = TunnelKey(base64: text) else {
            throw UserFacingError(
                "key file \(path) must hold 32 random bytes in base64 (44 characters), as udptun-relay --genkey prints",
                exitCode: ExitStatus.configuration)
        }
        if TextFile.isReadableByOthers(path) {
            logger.warning("key file \(path) is readable by every user: chmod 600 \(path)")
        }
        return key
    }
}

extension Framing {
    /// The log line that says how datagrams are protected.
    public func describe(_ logger: Logger) {
        if self is GTPUFraming {
            logger.info("framing \(name): unauthenticated, as 3GPP defines it; --allow and the sessions' prefixes are its gates")
        } else if isAuthenticated {
            logger.info("framing \(name): datagrams without a valid tag, and replays, are dropped")
        } else {
            logger.warning("framing \(name) is unauthenticated: use --key-file to authenticate every datagram")
        }
    }
}

extension AEADCipher: ExpressibleByArgument {}
