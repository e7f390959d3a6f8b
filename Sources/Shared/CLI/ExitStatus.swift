import Glibc
import KernelIO

/// Exit codes shared by the three programs (sysexits.h values).
public enum ExitStatus {
    /// Bad command line (ArgumentParser uses the same code for validation errors).
    public static let usage: Int32 = 64
    /// Configuration the operator must fix: sysctls, permissions, devices.
    public static let configuration: Int32 = 78
    /// A fault at run time (device vanished, socket error).
    public static let runtime: Int32 = 1
}

/// A failure explained in one line, with the exit code that classifies it.
public struct UserFacingError: Error, CustomStringConvertible {
    public let message: String
    public let exitCode: Int32

    public init(_ message: String, exitCode: Int32) {
        self.message = message
        self.exitCode = exitCode
    }

    public var description: String { message }
}

/// Prints `program: error: message` to stderr and exits with the error's code.
public func exitWithError(_ program: String, _ error: UserFacingError) -> Never {
    StandardStreams.printError("\(program): error: \(error.message)")
    exit(error.exitCode)
}

/// Runs an async-free command body, turning user-facing errors into one line and an exit code.
public func runReportingErrors(program: String, _ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as UserFacingError {
        exitWithError(program, error)
    } catch let error as TunDevice.Failure {
        exitWithError(
            program, UserFacingError(error.userMessage, exitCode: error.isConfiguration ? ExitStatus.configuration : ExitStatus.runtime))
    } catch let error as SocketFailure {
        exitWithError(program, UserFacingError(error.description, exitCode: ExitStatus.configuration))
    } catch let error as AddressResolver.Failure {
        exitWithError(
            program, UserFacingError(error.description, exitCode: error.isMalformed ? ExitStatus.usage : ExitStatus.configuration))
    } catch let error as SystemError {
        exitWithError(program, UserFacingError(error.description, exitCode: ExitStatus.runtime))
    }
}
