import ArgumentParser
import KernelIO
import Logging
import Monitoring
import WireFormat

/// Options every program takes.
public struct CommonOptions: ParsableArguments {
    @Option(help: "Seconds between live reports (0 turns them off).")
    public var interval: Double = 1

    @Flag(help: "Print each report as one JSON object per line.")
    public var json = false

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    public var logLevel: String = "info"

    @Option(
        help: ArgumentHelp(
            "Serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9101; :9101 listens on every address).",
            valueName: "HOST:PORT"))
    public var metrics: String?

    public init() {}

    public func validate() throws {
        guard interval >= 0, interval.isFinite else { throw ValidationError("--interval must be 0 or more seconds") }
        if let metrics { _ = try metricsAddress(metrics) }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
    }

    func metricsAddress(_ text: String) throws -> SocketAddress {
        do {
            return try AddressResolver.resolve(text, defaultPort: nil)
        } catch {
            throw ValidationError("--metrics '\(text)': \(error) (give HOST:PORT, e.g. 127.0.0.1:9101)")
        }
    }

    /// With `--metrics`, starts the endpoint: `register` adds the program's figures to the
    /// exposition (build info and role are added here). Call before dropping privileges, so a low
    /// port can be bound; stop the server when the program ends.
    public func startMetrics(role: String, logger: Logger, register: (MetricsExposition) -> Void) throws -> MetricsServer? {
        guard let metrics else { return nil }
        let address = try metricsAddress(metrics)
        let exposition = MetricsExposition(constantLabels: [("role", role)])
        exposition.addBuildInfo(version: UDPTunVersion.current)
        register(exposition)
        do throws(MetricsServerError) {
            let server = try MetricsServer(address: address) { exposition.render() }
            logger.info("metrics at http://\(server.localAddress)/metrics")
            return server
        } catch {
            throw UserFacingError(error.description, exitCode: ExitStatus.configuration)
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
