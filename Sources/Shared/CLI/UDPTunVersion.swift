/// udptun's version: every program's `--version`, and the Debian package's version
/// (deploy/package.sh reads it from `udptun-relay --version`).
public enum UDPTunVersion {
    public static let current = "0.6.0"
}
