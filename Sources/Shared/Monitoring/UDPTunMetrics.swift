import Engine
import KernelIO
import Measurement
import WireFormat

/// udptun's metric names: the `udptun_` prefix, base units, `_total` on counters. Every counter of
/// the programs' JSON reports has one (docs/monitoring.md, "Counters", lists them with their meanings).
extension MetricsExposition {
    /// `udptun_build_info{version, role}` = 1.
    public func addBuildInfo(version: String) {
        gauge("udptun_build_info", help: "Always 1; the labels say which udptun this is.", labels: [("version", version)]) { 1 }
    }

    /// A tunnel endpoint's counters (client or relay), all queues together, and per queue the two
    /// figures the JSON report gives per queue when there are several.
    public func addTunnel(_ counters: [TunnelCounters]) {
        let totals = snapshot { counters.snapshot() }
        func counter(
            _ name: String, _ help: String, labels: [(String, String)] = [],
            _ read: @escaping @Sendable (TunnelSnapshot) -> UInt64
        ) {
            self.counter(name, help: help, labels: labels) { read(totals.value) }
        }
        for count in TunnelCount.allCases {
            counter(count.metricName, count.metricHelp) { $0[count] }
        }
        for reason in DropReason.allCases {
            counter(
                "udptun_dropped_packets_total", "Packets or datagrams dropped, by reason (JSON: drops; their sum: dropped).",
                labels: [("reason", reason.description)]
            ) { $0.drops(reason) }
        }
        for type in ControlMessage.allCases {
            for (direction, side) in [("in", \TunnelSnapshot.controlReceived), ("out", \TunnelSnapshot.controlSent)] {
                counter(
                    "udptun_control_messages_total",
                    "The framing's own messages (echo, keepalive, ...) received (in) and sent (out) (JSON: control_in, control_out).",
                    labels: [("type", type.description), ("direction", direction)]
                ) { $0[keyPath: side][type.rawValue] }
            }
        }
        guard counters.count > 1 else { return }
        for (index, queue) in counters.enumerated() {
            for count in TunnelCount.perQueue {
                self.counter(
                    count.queueMetricName, help: "Per queue: " + count.help.dropLast() + " (JSON: \(count.jsonKey)_qN).",
                    labels: [("queue", String(index))]
                ) { queue[count] }
            }
        }
    }

    /// Which kernel offloads are in use (`udptun_offload_enabled{feature}`, 1 or 0), as probed at start.
    public func addOffloads(_ features: [(feature: String, on: Bool)]) {
        for (feature, on) in features {
            gauge(
                "udptun_offload_enabled", help: "Kernel offloads in use, as probed at start (the log's offloads line).",
                labels: [("feature", feature)]
            ) { on ? 1 : 0 }
        }
    }

    /// Per session (a key, a GTP-U session) when there are several: the final report's `sessions`.
    public func addSessions(names: [String], counters: SessionCounters) {
        for (index, name) in names.enumerated() where index < counters.count {
            let labels = [("session", name)]
            counter(
                "udptun_session_forwarded_packets_total",
                help: "Inner packets from this session written to the TUN device (JSON: sessions.forwarded).",
                labels: labels
            ) { counters.forwarded[index].load }
            counter(
                "udptun_session_forwarded_bytes_total", help: "Their bytes (JSON: sessions.forwarded_bytes).",
                labels: labels
            ) { counters.forwardedBytes[index].load }
            counter(
                "udptun_session_sent_packets_total", help: "Inner packets sealed and sent in this session (JSON: sessions.sent).",
                labels: labels
            ) { counters.sent[index].load }
            counter(
                "udptun_session_sent_bytes_total", help: "Their bytes (JSON: sessions.sent_bytes).",
                labels: labels
            ) { counters.sentBytes[index].load }
        }
    }

    /// The size of the relay's return-path table and its evictions.
    public func addClientTable(_ clients: ClientTable) {
        gauge("udptun_clients", help: "Client inner addresses in the return-path table (JSON: clients).") { Double(clients.count) }
        counter("udptun_clients_evicted_total", help: "Idle clients replaced by new ones in a full table (JSON: clients_evicted).") {
            clients.evicted
        }
    }

    /// Failed re-reads of the relay's own addresses.
    public func addOwnAddresses(_ ownAddresses: OwnAddresses) {
        counter(
            "udptun_own_address_refresh_failed_total",
            help: "Failed re-reads of the relay's own addresses (JSON: own_address_refresh_failed)."
        ) { ownAddresses.failedRefreshes }
    }

    /// The client's generator.
    public func addGenerator(_ counters: ProbeGenerator.Counters) {
        counter("udptun_generated_packets_total", help: "Generator payloads sent (JSON: generated).") { counters.sent.load }
        counter("udptun_generate_failed_total", help: "Generator sends that failed (JSON: generate_failed).") { counters.failed.load }
    }

    /// The relay's clients, one series per inner address (`--metrics-per-client`: bounded by
    /// `--max-clients`, never labelled by port). Read `chunk` clients per hold of the table's lock,
    /// so a scrape never holds the data plane up for more than a bounded copy.
    public func addClients(_ table: ClientTable, chunk: Int = 256) {
        labelledSeries(
            label: "client",
            counters: [
                (
                    "udptun_client_received_packets_total",
                    "Inner packets from this client forwarded to the TUN device (up to a second late)."
                ),
                ("udptun_client_received_bytes_total", "Inner bytes from this client forwarded to the TUN device (up to a second late)."),
                ("udptun_client_sent_packets_total", "Inner packets routed to this client."),
                ("udptun_client_sent_bytes_total", "Inner bytes routed to this client.")
            ],
            gauges: [
                (
                    "udptun_client_last_seen_timestamp_seconds",
                    "When this client's return path was last refreshed by a packet or a keepalive (Unix time, to the second)."
                )
            ]
        ) {
            let monotonic = Clock.monotonicNanoseconds(), wall = Clock.wallNanoseconds()
            var values: [LabelledValues] = [], next: Int? = 0
            while let start = next {
                let (clients, following) = table.clients(from: start, limit: chunk)
                for client in clients {
                    values.append(
                        LabelledValues(
                            label: client.address.description,
                            counters: [client.received.packets, client.received.bytes, client.sent.packets, client.sent.bytes],
                            gauges: [Double(wall &- client.idle(at: monotonic)) / 1e9]))
                }
                next = following
            }
            return values
        }
    }

    /// GTP-U path supervision by Echo Request (TS 29.281 §7.2): the figures of the JSON report's
    /// `gtpu_*` and `echo_rtt_us`.
    public func addGTPUPaths(_ monitor: GTPUPathMonitor) {
        let summary = snapshot { monitor.summary }
        gauge(
            "udptun_gtpu_paths_down",
            help: "GTP-U peers that missed \(GTPUPathMonitor.missedForDown) echoes in a row (JSON: gtpu_paths_down)."
        ) {
            Double(summary.value.pathsDown)
        }
        counter("udptun_gtpu_path_down_events_total", help: "Times a GTP-U path went down (JSON: gtpu_path_down_events).") {
            UInt64(summary.value.downEvents)
        }
        gauge("udptun_gtpu_echo_rtt_seconds", help: "Shortest last echo round trip over the GTP-U paths, 0 before any (JSON: echo_rtt_us).")
        {
            Double(summary.value.shortestRoundTrip ?? 0) / 1e9
        }
        gauge("udptun_gtpu_rejected_teids", help: "TEIDs a peer answered with an Error Indication (JSON: gtpu_rejected_teids).") {
            Double(summary.value.rejectedTEIDs)
        }
        counter(
            "udptun_gtpu_ignored_rejections_total",
            help:
                "Error Indications naming our TEIDs that were not acted on: from an endpoint the session does not use (JSON: gtpu_ignored_rejections)."
        ) {
            summary.value.ignoredRejections
        }
    }

    /// The sink's accounting, as `published` returns it (the receiver publishes a copy every 100 ms).
    public func addSink(_ published: @escaping @Sendable () -> SinkAccounting) {
        let accounting = snapshot(published)
        let totals = snapshot { accounting.value.totals }
        func counter(_ name: String, _ help: String, _ read: @escaping @Sendable (SinkTotals) -> UInt64) {
            self.counter(name, help: help) { read(totals.value) }
        }
        func gauge(_ name: String, _ help: String, _ read: @escaping @Sendable (SinkAccounting) -> Double) {
            self.gauge(name, help: help) { read(accounting.value) }
        }
        counter("udptun_sink_datagrams_total", "Datagrams received, of any kind (JSON: datagrams).") { $0.datagrams }
        counter("udptun_sink_bytes_total", "Payload bytes received (JSON: bytes).") { $0.bytes }
        counter("udptun_sink_payloads_total", "Unique generator payloads received (JSON: received).") { $0.received }
        counter("udptun_sink_duplicates_total", "Generator payloads received more than once (JSON: duplicates).") { $0.duplicates }
        counter("udptun_sink_reordered_total", "Generator payloads that arrived after a later one (JSON: reordered).") { $0.reordered }
        counter("udptun_sink_corrupt_total", "Generator payloads whose CRC or length is wrong (JSON: corrupt).") { $0.corrupt }
        counter("udptun_sink_unsequenced_total", "Datagrams that are not generator payloads (JSON: unsequenced).") { $0.unsequenced }
        gauge(
            "udptun_sink_lost_payloads",
            "Generator payloads missing below the highest sequence seen; falls when late ones arrive (JSON: lost)."
        ) {
            Double($0.totals.lost)
        }
        gauge("udptun_sink_streams", "Generator streams being tracked (JSON: streams).") { Double($0.totals.streams) }
        counter(
            "udptun_sink_streams_replaced_total",
            "Streams dropped, least recently seen first, to track new ones beyond \(SinkAccounting.maximumStreams) (JSON: streams_replaced)."
        ) {
            $0.streamsReplaced
        }
        counter(
            "udptun_sink_latency_withheld_total",
            "Generator payloads whose one-way latency is not in udptun_sink_latency_seconds: their sender's clock is not the sink's and --synchronised-clocks was not given (JSON: latency_withheld)."
        ) { _ in accounting.value.latencyWithheld }
        counter(
            "udptun_sink_latency_negative_total",
            "Generator payloads that arrived before they were sent by the clocks, left out of udptun_sink_latency_seconds (JSON: latency_negative)."
        ) { _ in accounting.value.latencyNegative }
        histogram(
            "udptun_sink_latency_seconds",
            help:
                "One-way latency of generator payloads whose sender shares the sink's clock, or all with --synchronised-clocks; empty when the clocks are not shared (JSON: latency_p50_us ... latency_max_us, latency_payloads)."
        ) {
            Self.latencyBuckets(accounting.value.latency)
        }
        gauge(
            "udptun_sink_jitter_seconds",
            "RFC 3550 interarrival jitter, the largest over the sources, 0 before any (JSON: jitter_us)."
        ) {
            ($0.largestJitterMicroseconds ?? 0) / 1e6
        }
    }

    /// `udptun_sink_latency_seconds`'s upper bounds, in µs: 10 µs to 10 s.
    public static let latencyBoundsMicroseconds: [UInt64] = [
        10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
        1_000_000, 2_500_000, 5_000_000, 10_000_000
    ]

    /// The histogram's cumulative counts at the bounds (each within the histogram's 1 % of its bound)
    /// and its exact sum; all 0 while nothing is recorded.
    static func latencyBuckets(_ latency: LatencyHistogram) -> HistogramValues {
        let counts = latency.cumulativeCounts(atOrBelow: latencyBoundsMicroseconds)
        return HistogramValues(
            buckets: zip(latencyBoundsMicroseconds, counts).map { (seconds(microseconds: $0), $1) },
            sum: Double(latency.sumMicroseconds) / 1e6, count: latency.count)
    }

    /// `microseconds` as a decimal number of seconds, exactly ("0.00001", "2.5", "10").
    static func seconds(microseconds: UInt64) -> String {
        let whole = microseconds / 1_000_000, fraction = microseconds % 1_000_000
        guard fraction > 0 else { return String(whole) }
        var digits = String(fraction)
        digits = String(repeating: "0", count: 6 - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(whole).\(digits)"
    }
}
