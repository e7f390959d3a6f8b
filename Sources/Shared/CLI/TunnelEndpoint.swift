import Engine
import KernelIO
import Logging
import Measurement
import Monitoring
import WireFormat

extension EngineLog {
    /// The engine's messages, logged at info and warning level.
    public init(_ logger: Logger) {
        self.init(info: { logger.info("\($0)") }, warning: { logger.warning("\($0)") })
    }
}

/// The assembly the client and the relay share, in this order: the TUN queues (MTU set, brought
/// up), the UDP socket group with the offloads, then `run`: metrics, the privilege drop, the data
/// plane, housekeeping and the report loop until a signal or a fault. A program adds only what
/// differs: its framing, route, policy, checks, extra series and report fields.
public struct TunnelEndpoint {
    public let role: String
    public let logger: Logger
    public let log: EngineLog
    public let lifecycle: Lifecycle
    let signals: SignalWaiter
    let common: CommonOptions
    let offloads: OffloadOptions
    let workers: WorkerOptions
    let privileges: PrivilegeOptions

    public init(
        role: String, logger: Logger, common: CommonOptions, offloads: OffloadOptions, workers: WorkerOptions,
        privileges: PrivilegeOptions
    ) throws {
        self.role = role
        self.logger = logger
        log = EngineLog(logger)
        self.common = common
        self.offloads = offloads
        self.workers = workers
        self.privileges = privileges
        signals = try SignalWaiter()
        lifecycle = try Lifecycle()
    }

    /// `--queues` queues of the TUN device `name` (attached or created), its MTU set to what `mtu`
    /// says (nil leaves it), brought up.
    public func openDevice(_ name: String, mtu: (TunDevice) throws -> Int?) throws -> [TunDevice] {
        let queues = try TunDevice.openQueues(name: name, count: workers.queues, offloads: offloads.enabled)
        if let mtu = try mtu(queues[0]) { try queues[0].setMTU(mtu) }
        try queues[0].bringUp(logger: logger)
        return queues
    }

    /// The device's queues and their sockets, offloads applied.
    public struct Plumbing {
        public let queues: [TunDevice]
        public let sockets: [UDPSocket]
        /// Each offload by name and whether it is on, as probed.
        public let offloadFeatures: [(feature: String, on: Bool)]
        public var device: TunDevice { queues[0] }
    }

    /// One socket per queue bound at `address` (one SO_REUSEPORT group), with the offloads applied.
    public func bindSockets(_ address: SocketAddress, for queues: [TunDevice]) throws -> Plumbing {
        let sockets = try UDPSocket.bindGroup(address, count: queues.count)
        return Plumbing(queues: queues, sockets: sockets, offloadFeatures: offloads.apply(to: sockets, tun: queues[0], logger: logger))
    }

    /// What a program adds to the report the endpoint writes.
    public struct ReportFields {
        public var extra: [(String, UInt64)] = []
        /// Per session (the relay's final report).
        public var sessions: [(String, SessionCounts)] = []
        /// The relay's clients (final report).
        public var clients: TunnelReport.ClientList?
        /// The generator's round trips (`--measure-rtt`).
        public var rtt: RTTTotals?

        public init(
            extra: [(String, UInt64)] = [], sessions: [(String, SessionCounts)] = [],
            clients: TunnelReport.ClientList? = nil, rtt: RTTTotals? = nil
        ) {
            self.extra = extra
            self.sessions = sessions
            self.clients = clients
            self.rtt = rtt
        }
    }

    /// Serves the metrics (the tunnel's counters and offloads, and what `metrics` adds), drops
    /// privileges if asked, starts the data plane (none for a generator-only client), then the
    /// `tasks` on a housekeeping thread and the threads `more` makes (the generator), and reports
    /// until a signal or a fault: every `--interval` and once at the end, with what `fields` adds.
    /// `ready` runs once the data plane moves packets (the programs log it, tests wait for it).
    public func run(
        _ tunnel: Tunnel?, plumbing: Plumbing?, counters: [TunnelCounters], tasks: [Housekeeping.Task] = [],
        metrics: (MetricsExposition) -> Void = { _ in }, more: () -> [WorkerThread] = { [] },
        ready: () -> Void = {}, fields: (_ final: Bool) -> ReportFields
    ) throws {
        let metricsServer = try common.startMetrics(role: role, logger: logger) { exposition in
            if let plumbing {
                exposition.addTunnel(counters)
                exposition.addOffloads(plumbing.offloadFeatures)
            }
            metrics(exposition)
        }
        defer { metricsServer?.stop() }
        try privileges.dropIfAsked(logger: logger)
        let started = try tunnel.map { try workers.start($0, lifecycle: lifecycle, logger: logger) }
        var threads = started?.workers ?? []
        if let housekeeping = Housekeeping(tasks).start(lifecycle) { threads.append(housekeeping) }
        ready()
        threads += more()

        let report = TunnelReport(role: role, json: common.json)
        var previous = TunnelSnapshot()
        try RoleRunner(lifecycle: lifecycle, signals: signals, interval: common.interval, logger: logger)
            .run(workers: threads) { final, elapsed, sinceLast in
                let now = counters.snapshot()
                let added = fields(final)
                var extra = counters.perQueueFigures()
                if let started { extra.append(("thread_hand_overs", UInt64(started.handOvers))) }
                emitReport(
                    report.line(
                        event: final ? "final" : "report", elapsed: elapsed, interval: sinceLast,
                        sessions: added.sessions, clients: added.clients, now: now, previous: previous,
                        extra: extra + added.extra, rtt: added.rtt))
                previous = now
            }
    }
}
