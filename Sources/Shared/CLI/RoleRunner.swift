import KernelIO
import Logging
import WireFormat

/// The main thread of every program: reports every `interval` seconds until SIGINT/SIGTERM or a
/// worker's stop request, then stops and joins the workers and prints the final report.
public struct RoleRunner {
    public let lifecycle: Lifecycle
    public let signals: SignalWaiter
    public let interval: Double
    public let logger: Logger

    public init(lifecycle: Lifecycle, signals: SignalWaiter, interval: Double, logger: Logger) {
        self.lifecycle = lifecycle
        self.signals = signals
        self.interval = interval
        self.logger = logger
    }

    /// Blocks until stopped. `report(final, elapsed, sinceLast)` runs on the main thread.
    /// Throws a runtime error if a worker failed.
    public func run(workers: [WorkerThread], report: (_ final: Bool, _ elapsed: Double, _ sinceLast: Double) -> Void) throws {
        let start = Clock.monotonicNanoseconds()
        let step = UInt64(interval * 1e9)
        var last = start
        var nextReport = step > 0 ? start + step : UInt64.max
        waiting: while !lifecycle.isStopping {
            let now = Clock.monotonicNanoseconds()
            let wait = nextReport == .max ? 3600 : Double(nextReport > now ? nextReport - now : 0) / 1e9
            switch signals.wait(seconds: wait, waker: lifecycle.waker) {
            case let .signal(number):
                logger.info("stopping on \(SignalWaiter.name(number))")
                break waiting
            case .stopRequested:
                break waiting
            case .timedOut:
                let reportTime = Clock.monotonicNanoseconds()
                guard reportTime >= nextReport else { continue }
                report(false, Double(reportTime - start) / 1e9, Double(reportTime - last) / 1e9)
                last = reportTime
                nextReport = max(nextReport + step, reportTime + 1)
            }
        }
        lifecycle.stop()
        for worker in workers { worker.join() }
        let end = Clock.monotonicNanoseconds()
        report(true, Double(end - start) / 1e9, Double(end - last) / 1e9)
        if let fatal = lifecycle.fatalError {
            throw UserFacingError(fatal, exitCode: ExitStatus.runtime)
        }
    }
}
