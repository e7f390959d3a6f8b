import ArgumentParser
import KernelIO
import Logging

/// `--user`: drop root after set-up.
public struct PrivilegeOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Switch to this user once the TUN device is open and the socket bound (start as root; the data plane needs no privilege).",
            valueName: "NAME"))
    public var user: String?

    public init() {}

    public func dropIfAsked(logger: Logger) throws {
        guard let user else { return }
        do {
            try Privileges.drop(to: user)
        } catch {
            throw UserFacingError(error.userMessage, exitCode: ExitStatus.configuration)
        }
        logger.info("running as \(user) from now on")
    }
}
