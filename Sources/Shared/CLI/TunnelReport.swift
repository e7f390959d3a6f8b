import Engine
import Measurement
import WireFormat

/// Formats a tunnel endpoint's counters as iperf3-style lines or JSON objects.
public struct TunnelReport {
    public let role: String
    public let json: Bool

    public init(role: String, json: Bool) {
        self.role = role
        self.json = json
    }

    /// `extra` adds role-specific fields (the client's generator, the relay's client count).
    /// `sessions` names each session with its counts (the relay's final report: per key or GTP-U session).
    /// `clients` lists the relay's clients (final report), most recently seen first.
    /// `rtt`: the generator's round trips (`--measure-rtt`), since it started.
    public func line(
        event: String, elapsed: Double, interval: Double,
        sessions: [(String, SessionCounts)] = [], clients: ClientList? = nil,
        now: TunnelSnapshot, previous: TunnelSnapshot, extra: [(String, UInt64)] = [], rtt: RTTTotals? = nil
    ) -> String {
        if json {
            var object = JSONLine()
            object.add("event", event)
            object.add("role", role)
            object.add("elapsed", elapsed)
            for count in TunnelCount.allCases { object.add(count.jsonKey, now[count]) }
            object.add("dropped", now.dropped)
            var drops = JSONLine()
            for reason in DropReason.allCases { drops.add(reason.description, now.drops(reason)) }
            object.add("drops", drops)
            // Control messages of the framing's own: received = forwarded + control + dropped.
            object.add("control", now.control)
            var controlIn = JSONLine(), controlOut = JSONLine()
            for type in ControlMessage.allCases {
                controlIn.add(type.description, now.controlReceived[type.rawValue])
                controlOut.add(type.description, now.controlSent[type.rawValue])
            }
            object.add("control_in", controlIn)
            object.add("control_out", controlOut)
            for (key, value) in extra { object.add(key, value) }
            if let rtt { Self.add(rtt, to: &object) }
            if !sessions.isEmpty {
                object.add(
                    "sessions",
                    sessions.map { name, counts in
                        var session = JSONLine()
                        session.add("session", name)
                        session.add("forwarded", counts.forwarded)
                        session.add("forwarded_bytes", counts.forwardedBytes)
                        session.add("sent", counts.sent)
                        session.add("sent_bytes", counts.sentBytes)
                        return session
                    })
            }
            if let clients {
                object.add(
                    "client_list",
                    clients.listed.map { client in
                        var entry = JSONLine()
                        entry.add("inner", client.address.description)
                        entry.add("endpoint", client.entry.endpoint.description)
                        entry.add("idle_s", clients.idleSeconds(client))
                        entry.add("from_client", client.received.packets)
                        entry.add("from_client_bytes", client.received.bytes)
                        entry.add("to_client", client.sent.packets)
                        entry.add("to_client_bytes", client.sent.bytes)
                        return entry
                    })
                object.add("clients_not_listed", UInt64(clients.notListed))
            }
            return object.description
        }
        let seconds = max(interval, 1e-9)
        func rate(_ current: UInt64, _ before: UInt64) -> String { Self.formatRate(Double(current &- before) / seconds) }
        func bits(_ current: UInt64, _ before: UInt64) -> String { Self.formatBits(Double(current &- before) * 8 / seconds) }
        var text = "[\(Self.pad(String(format1(elapsed)) + "s", 7))] " + (event == "final" ? "total " : "")
        if event == "final" {
            text +=
                "udp→tun \(now[.received]) rx / \(now[.forwarded]) fwd | tun→udp \(now[.tunRead]) rd / \(now[.sent]) tx | dropped \(now.dropped)"
        } else {
            text += "udp→tun \(rate(now[.forwarded], previous[.forwarded])) \(bits(now[.forwardedBytes], previous[.forwardedBytes]))"
            text += " | tun→udp \(rate(now[.sent], previous[.sent])) \(bits(now[.sentBytes], previous[.sentBytes]))"
            text += " | dropped \(now.dropped &- previous.dropped) (total \(now.dropped))"
        }
        var reasons = DropReason.allCases.filter { now.drops($0) > 0 }.map { "\($0)=\(now.drops($0))" }
        if now[.socketDropped] > 0 { reasons.append("socket_full=\(now[.socketDropped])") }
        let control = ControlMessage.allCases.filter { now.controlReceived[$0.rawValue] + now.controlSent[$0.rawValue] > 0 }
            .map { "\($0)=\(now.controlReceived[$0.rawValue])/\(now.controlSent[$0.rawValue])" }
        if !control.isEmpty { text += " control in/out [" + control.joined(separator: " ") + "]" }
        if !reasons.isEmpty { text += " [" + reasons.joined(separator: " ") + "]" }
        if now[.tooBigSent] > 0 { text += " too_big_sent=\(now[.tooBigSent])" }
        if now[.repliesLimited] > 0 { text += " replies_limited=\(now[.repliesLimited])" }
        for (key, value) in extra { text += " \(key)=\(value)" }
        if let rtt { text += Self.text(rtt) }
        if let clients, !clients.listed.isEmpty {
            let shown = clients.listed.prefix(ClientList.textLimit).map { client in
                "\(client.address) at \(client.entry.endpoint) idle \(format1(clients.idleSeconds(client)))s"
                    + " in \(client.received.packets)/\(client.received.bytes)B out \(client.sent.packets)/\(client.sent.bytes)B"
            }
            let more = clients.listed.count - shown.count + clients.notListed
            text +=
                " clients [" + shown.joined(separator: "; ") + (more > 0 ? "; \(more) more (--json lists \(ClientList.jsonLimit))" : "")
                + "]"
        }
        if !sessions.isEmpty {
            text += " sessions fwd/sent [" + sessions.map { "\($0)=\($1.forwarded)/\($1.sent)" }.joined(separator: " ") + "]"
        }
        return text
    }

    /// The relay's clients for the final report: at most `jsonLimit`, most recently seen first.
    public struct ClientList {
        public static let jsonLimit = 1000
        public static let textLimit = 20
        public let listed: [ClientTable.Client]
        public let notListed: Int
        let now: UInt64

        public init(_ clients: [ClientTable.Client], now: UInt64) {
            listed = Array(clients.prefix(Self.jsonLimit))
            notListed = clients.count - listed.count
            self.now = now
        }

        /// Seconds since the client's return path was last refreshed (by a packet or a keepalive).
        func idleSeconds(_ client: ClientTable.Client) -> Double {
            Double(client.idle(at: now)) / 1e9
        }
    }

    /// The round trips in JSON: percentiles in µs (null before the first answer), the counts, and the
    /// losses each way (null until an answer tells them).
    static func add(_ rtt: RTTTotals, to object: inout JSONLine) {
        let summary = rtt.summary
        object.add("rtt_answers", rtt.answers)
        object.add("rtt_min_us", summary.map { Double($0.minimum) }, decimals: 0)
        object.add("rtt_p50_us", summary.map { Double($0.p50) }, decimals: 0)
        object.add("rtt_p90_us", summary.map { Double($0.p90) }, decimals: 0)
        object.add("rtt_p99_us", summary.map { Double($0.p99) }, decimals: 0)
        object.add("rtt_p999_us", summary.map { Double($0.p999) }, decimals: 0)
        object.add("rtt_max_us", summary.map { Double($0.maximum) }, decimals: 0)
        object.add("rtt_mean_us", summary.map(\.mean), decimals: 1)
        object.add("rtt_loss_forward", rtt.lossForward.map { Double($0) }, decimals: 0)
        object.add("rtt_refused", rtt.refused.map { Double($0) }, decimals: 0)
        object.add("rtt_loss_back", rtt.lossBack.map { Double($0) }, decimals: 0)
        object.add("rtt_duplicates", rtt.duplicates)
        object.add("rtt_reordered", rtt.reordered)
        object.add("rtt_corrupt", rtt.corrupt)
        object.add("rtt_ignored", rtt.ignored)
        object.add("rtt_clock_errors", rtt.clockErrors)
    }

    static func text(_ rtt: RTTTotals) -> String {
        guard let summary = rtt.summary else { return " | rtt no answers" }
        func ms(_ microseconds: UInt64) -> String { JSONLine.format(Double(microseconds) / 1000, decimals: 3).withDecimals(3) }
        var text =
            " | rtt p50/p90/p99/max \(ms(summary.p50))/\(ms(summary.p90))/\(ms(summary.p99))/\(ms(summary.maximum)) ms answers \(rtt.answers)"
        if let forward = rtt.lossForward, let back = rtt.lossBack { text += " lost fwd/back \(forward)/\(back)" }
        if let refused = rtt.refused, refused > 0 { text += " refused \(refused)" }
        if rtt.reordered > 0 { text += " reordered \(rtt.reordered)" }
        if rtt.corrupt > 0 { text += " corrupt \(rtt.corrupt)" }
        return text
    }

    public static func formatRate(_ perSecond: Double) -> String {
        perSecond >= 1e6
            ? "\(format1(perSecond / 1e6)) Mpps" : perSecond >= 1e3 ? "\(format1(perSecond / 1e3)) kpps" : "\(Int(perSecond)) pps"
    }

    public static func formatBits(_ perSecond: Double) -> String {
        perSecond >= 1e9
            ? "\(format2(perSecond / 1e9)) Gb/s"
            : perSecond >= 1e6 ? "\(format2(perSecond / 1e6)) Mb/s" : "\(format2(perSecond / 1e3)) kb/s"
    }

    static func pad(_ text: String, _ width: Int) -> String {
        String(repeating: " ", count: max(0, width - text.count)) + text
    }
}

func format1(_ value: Double) -> String { JSONLine.format(value, decimals: 1).withDecimals(1) }
func format2(_ value: Double) -> String { JSONLine.format(value, decimals: 2).withDecimals(2) }

extension String {
    /// Pads a number's fractional part to `decimals` digits ("3" → "3.0").
    func withDecimals(_ decimals: Int) -> String {
        let parts = split(separator: ".", maxSplits: 1)
        let fraction = parts.count > 1 ? String(parts[1]) : ""
        return parts[0] + "." + fraction + String(repeating: "0", count: max(0, decimals - fraction.count))
    }
}
