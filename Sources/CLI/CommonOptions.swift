import ArgumentParser
import Logging
import Engine
import Measurement
import KernelIO
import WireFormat

/// Options every program takes.
public struct CommonOptions: ParsableArguments {
    @Option(help: "Seconds between live reports (0 turns them off).")
    public var interval: Double = 1

    @Flag(help: "Print each report as one JSON object per line.")
    public var json = false

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    public var logLevel: String = "info"

    public init() {}

    public func validate() throws {
        guard interval >= 0, interval.isFinite else { throw ValidationError("--interval must be 0 or more seconds") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
    }

    /// Logs go to stderr so stdout carries only reports.
    public func makeLogger(label: String) -> Logger {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }
}

/// Writes a report line to stdout at once (reports are read live, often through a pipe).
public func emitReport(_ line: String) {
    StandardStreams.printOut(line)
}
