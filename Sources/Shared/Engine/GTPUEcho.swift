import KernelIO
import WireFormat

/// Periodic GTP-U Echo Requests from a data socket, and the path state they reveal, logged when it
/// changes and counted as control messages sent.
public enum GTPUEcho {
    /// Housekeeping: Echo Requests to `peers()` every `interval` seconds from `socket` (none when 0),
    /// and once a second a look at what the receiving side recorded, logged when it changed: paths
    /// that came back, and the Error Indications that named our TEIDs since the last look, each
    /// handed to `rejected`, which acts on it or not (the relay forgets that session's return paths
    /// through the endpoint it came from, if it has any there) and says which.
    public static func tasks(
        interval: Double, socket: UDPSocket, monitor: GTPUPathMonitor, counters: TunnelCounters,
        peers: @escaping @Sendable () -> [SocketAddress], log: EngineLog,
        rejected onRejected: @escaping @Sendable (GTPUPathMonitor.Rejection) -> Bool = { _ in true }
    )
        -> [Housekeeping.Task]
    {
        let reported = Locked<Set<SocketAddress>>([])
        let echo = {
            Housekeeping.Task("gtp-u echo", every: interval) {
                for peer in peers() {
                    if sendEchoRequest(socket: socket, to: peer, monitor: monitor, counters: counters) {
                        log.warning("gtp-u path down: no Echo Response from \(peer) to \(GTPUPathMonitor.missedForDown) requests in a row")
                        reported.withLock { _ = $0.insert(peer) }
                    }
                }
            }
        }
        let watch = Housekeeping.Task("gtp-u path report", every: 1) {
            let paths = monitor.paths
            reported.withLock { down in
                for peer in down where paths[peer]?.isDown == false {
                    log.info("gtp-u path up: \(peer) answers again")
                    down.remove(peer)
                }
            }
            var accepted: [GTPUPathMonitor.Rejection] = [], ignored = 0
            for rejection in monitor.takeRejections() {
                let actedOn = onRejected(rejection)
                monitor.judged(rejection, actedOn: actedOn)
                if actedOn { accepted.append(rejection) } else { ignored += 1 }
            }
            if !accepted.isEmpty {
                let named = accepted.map { "0x" + String($0.teid, radix: 16) + " from \($0.peer)" }.joined(separator: ", ")
                log.warning("gtp-u session rejected: an Error Indication named TEID \(named) (the peer knows no such session)")
            }
            if ignored > 0 {
                log.info("gtp-u: ignored \(ignored) Error Indication(s) naming a session's TEID from an endpoint that session does not use")
            }
        }
        return interval > 0 ? [echo(), watch] : [watch]
    }

    /// The UPF's tasks: echoes to every client endpoint in the return-path table, and a session whose
    /// downlink TEID a peer rejected is forgotten there, but only its return paths through that
    /// peer's endpoint: an Error Indication from anywhere else (anyone can send one) changes nothing.
    public static func relayTasks(
        _ framing: GTPUFraming, interval: Double, socket: UDPSocket, counters: TunnelCounters,
        clients: ClientTable, log: EngineLog
    ) -> [Housekeeping.Task] {
        let downlinkSessions = framing.sessions.enumerated().map { ($1.downlinkTEID, PeerSession(index: $0)) }
        return tasks(
            interval: interval, socket: socket, monitor: framing.monitor, counters: counters,
            peers: { Array(Set(clients.snapshot().values.map(\.endpoint))) }, log: log
        ) { rejection in
            var forgotten = 0
            for (downlink, session) in downlinkSessions where downlink == rejection.teid {
                forgotten += clients.forget(session: session, through: rejection.peer)
            }
            return forgotten > 0
        }
    }

    /// Sends one Echo Request to `peer`, counted; true when the path went down with it (the
    /// previous ones went unanswered).
    @discardableResult
    public static func sendEchoRequest(
        socket: any DatagramSocket, to peer: SocketAddress, monitor: GTPUPathMonitor,
        counters: TunnelCounters
    ) -> Bool {
        var request = [UInt8](repeating: 0, count: GTPU.mandatoryLength + GTPU.optionalLength)
        let (sequence, wentDown) = monitor.sending(to: peer, at: Clock.monotonicNanoseconds())
        var span = request.mutableSpan
        let length = GTPU.writeEchoRequest(&span, sequence: sequence)
        if (try? socket.send(request.span.extracting(0..<length), to: peer)) != nil {
            counters.controlSent[ControlMessage.echoRequest.rawValue].add(1)
        }
        return wentDown
    }

    /// Report fields: paths down now, down events so far, the round trip of the first path (µs; the
    /// client has one), TEIDs peers rejected, and Error Indications ignored.
    public static func figures(_ monitor: GTPUPathMonitor) -> [(String, UInt64)] {
        let summary = monitor.summary
        return [
            ("gtpu_paths_down", UInt64(summary.pathsDown)), ("gtpu_path_down_events", UInt64(summary.downEvents)),
            ("echo_rtt_us", (summary.shortestRoundTrip ?? 0) / 1000), ("gtpu_rejected_teids", UInt64(summary.rejectedTEIDs)),
            ("gtpu_ignored_rejections", summary.ignoredRejections)
        ]
    }
}
