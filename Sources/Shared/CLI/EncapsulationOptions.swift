import ArgumentParser
import Logging

/// `--key-file` and `--encrypt`: raw framing, or authenticated (optionally encrypted) framing.
public struct EncapsulationOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Shared key (32 random bytes, base64; udptun-relay --genkey prints one). Every datagram is then authenticated and replays are dropped. Without it: raw framing, unauthenticated.",
        valueName: "PATH"))
    public var keyFile: String?

    @Flag(help: "With --key-file: also encrypt the inner packets (ChaCha20-Poly1305).")
    public var encrypt = false

    public init() {}

    public func validate() throws {
        if encrypt, keyFile == nil { throw ValidationError("--encrypt needs --key-file") }
    }

    /// The chosen encapsulation, with its key loaded. Pass it to a generic function so the data plane
    /// is specialised for the concrete type.
    public func make(logger: Logger) throws -> any Encapsulation {
        guard let keyFile else { return RawEncapsulation() }
        let key: TunnelKey
        do {
            key = try TunnelKey(contentsOf: keyFile)
        } catch {
            throw UserFacingError(error.description, exitCode: ExitStatus.configuration)
        }
        if TextFile.isReadableByOthers(keyFile) {
            logger.warning("key file \(keyFile) is readable by every user: chmod 600 \(keyFile)")
        }
        return AuthenticatedEncapsulation(key: key, encrypt: encrypt)
    }
}

extension Encapsulation {
    /// The log line that says how datagrams are protected.
    public func describe(_ logger: Logger) {
        if isAuthenticated {
            logger.info("encapsulation \(name): datagrams without a valid tag, and replays, are dropped")
        } else {
            logger.warning("encapsulation \(name) is unauthenticated: use --key-file to authenticate every datagram")
        }
    }
}
