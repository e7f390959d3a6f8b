import Glibc
import KernelIO
import Synchronization
import Testing

@testable import Engine
@testable import Measurement
@testable import Monitoring
@testable import WireFormat

/// The Prometheus exposition (names, counters following the programs' totals, series that come and
/// go) and its HTTP endpoint, including what a hostile client of the port can and cannot do.
@Suite("Metrics: exposition and endpoint")
struct MetricsTests {
    /// The sample lines of an exposition, `name{labels}` → value.
    static func samples(_ text: [UInt8]) -> [String: Double] {
        var result: [String: Double] = [:]
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            result[String(line[..<space])] = value
        }
        return result
    }

    @Test("counters follow the totals they read, gauges their value, and every series carries the role")
    func countersFollowTotals() {
        let exposition = MetricsExposition(constantLabels: [("role", "relay")])
        let counters = [TunnelCounters(), TunnelCounters()]
        exposition.addBuildInfo(version: "9.9.9")
        exposition.addTunnel(counters)
        var tally = BatchTally()
        tally[.forwarded] = 7
        tally.drop(.spoofedSource, count: 2)
        tally.received(.keepalive)
        counters[0].add(&tally)
        counters[1].add(&tally)
        var first = Self.samples(exposition.render())
        #expect(first[#"udptun_build_info{role="relay",version="9.9.9"}"#] == 1)
        #expect(first[#"udptun_forwarded_packets_total{role="relay"}"#] == 14)
        #expect(first[#"udptun_dropped_packets_total{role="relay",reason="spoofed_source"}"#] == 4)
        #expect(first[#"udptun_dropped_packets_total{role="relay",reason="truncated"}"#] == 0)
        #expect(first[#"udptun_control_messages_total{role="relay",type="keepalive",direction="in"}"#] == 2)
        #expect(first[#"udptun_queue_tun_read_packets_total{role="relay",queue="1"}"#] == 0)
        counters[1].add(&tally)
        first = Self.samples(exposition.render())
        #expect(first[#"udptun_forwarded_packets_total{role="relay"}"#] == 21, "a second scrape adds only the difference")
        // Every report counter is there: one series per drop reason and per control type and direction.
        #expect(first.keys.filter { $0.hasPrefix("udptun_dropped_packets_total") }.count == DropReason.allCases.count)
        #expect(first.keys.filter { $0.hasPrefix("udptun_control_messages_total") }.count == 2 * ControlMessage.allCases.count)
        #expect(first.keys.allSatisfy { $0.contains(#"role="relay""#) })
    }

    @Test("offloads as probed, and per-session counts where there are several sessions")
    func offloadsAndSessions() {
        let exposition = MetricsExposition(constantLabels: [("role", "relay")])
        exposition.addOffloads([("udp_gso", true), ("tun_uso", false)])
        let sessions = SessionCounters(sessions: 2)
        sessions.forwarded[1].add(5)
        sessions.sentBytes[0].add(700)
        exposition.addSessions(names: ["shared", "alice.key"], counters: sessions)
        let samples = Self.samples(exposition.render())
        #expect(samples[#"udptun_offload_enabled{role="relay",feature="udp_gso"}"#] == 1)
        #expect(samples[#"udptun_offload_enabled{role="relay",feature="tun_uso"}"#] == 0)
        #expect(samples[#"udptun_session_forwarded_packets_total{role="relay",session="alice.key"}"#] == 5)
        #expect(samples[#"udptun_session_forwarded_packets_total{role="relay",session="shared"}"#] == 0)
        #expect(samples[#"udptun_session_sent_bytes_total{role="relay",session="shared"}"#] == 700)
    }

    @Test("per-client series are read a bounded chunk per lock hold, every client once")
    func perClientSeriesInChunks() {
        let clients = ClientTable(capacity: 1000)
        func address(_ index: Int) -> IPAddress { .v4(0xC613_0000 + UInt32(index)) }
        for index in 0..<1000 {
            clients.learn(
                address(index), at: SocketAddress(ip: .v4(0xC612_0101), port: 40000),
                session: PeerSession(index: index % 3), now: 1)
        }
        // Free slots in the middle (they keep their old addresses), some taken again.
        clients.forget(session: PeerSession(index: 1))
        for index in 1000..<1100 { clients.learn(address(index), at: SocketAddress(ip: .v4(0xC612_0101), port: 40000), now: 2) }
        var seen: [IPAddress] = [], next: Int? = 0, chunks = 0
        while let start = next {
            let chunk = clients.clients(from: start, limit: 64)
            #expect(chunk.clients.count <= 64)
            seen += chunk.clients.map(\.address)
            next = chunk.next
            chunks += 1
        }
        #expect(seen.count == clients.count && Set(seen) == Set(clients.clients().map(\.address)))
        #expect(chunks == (1000 + 63) / 64)
        let exposition = MetricsExposition(constantLabels: [])
        exposition.addClients(clients, chunk: 7)
        #expect(Self.samples(exposition.render()).keys.count { $0.hasPrefix("udptun_client_sent_bytes_total{") } == clients.count)
    }

    @Test("labelled series appear, follow, start over and disappear with what they describe")
    func labelledSeriesComeAndGo() {
        let exposition = MetricsExposition(constantLabels: [("role", "relay")])
        let clients = ClientTable(capacity: 4)
        exposition.addClients(clients)
        #expect(!Self.samples(exposition.render()).keys.contains { $0.hasPrefix("udptun_client_") })
        clients.learn(.v4(0xC613_0001), at: SocketAddress(ip: .v4(0xC612_0101), port: 40000), now: 1)
        clients.credit([(.v4(0xC613_0001), ClientTable.Traffic(packets: 3, bytes: 300))])
        var samples = Self.samples(exposition.render())
        #expect(samples[#"udptun_client_received_packets_total{role="relay",client="198.19.0.1"}"#] == 3)
        #expect(samples[#"udptun_client_received_bytes_total{role="relay",client="198.19.0.1"}"#] == 300)
        #expect(samples[#"udptun_client_last_seen_timestamp_seconds{role="relay",client="198.19.0.1"}"#] != nil)
        #expect(!samples.keys.contains { $0.contains("40000") }, "never labelled by port")
        _ = clients.forget(session: PeerSession())
        samples = Self.samples(exposition.render())
        #expect(!samples.keys.contains { $0.hasPrefix("udptun_client_") })
        clients.learn(.v4(0xC613_0001), at: SocketAddress(ip: .v4(0xC612_0101), port: 40000), now: 2)
        clients.credit([(.v4(0xC613_0001), ClientTable.Traffic(packets: 1, bytes: 10))])
        samples = Self.samples(exposition.render())
        #expect(samples[#"udptun_client_received_packets_total{role="relay",client="198.19.0.1"}"#] == 1, "learned again: starts over")
    }

    @Test("the sink's figures, lost as a gauge (it falls when late payloads arrive)")
    func sinkFigures() throws {
        let exposition = MetricsExposition(constantLabels: [("role", "sink")])
        var accounting = SinkAccounting(localClock: 3)
        for sequence: UInt64 in [0, 2, 2] {
            var payload = [UInt8](repeating: 0, count: 64)
            var span = payload.mutableSpan
            ProbePayload(streamID: 4, sequence: sequence, sendTimeNanoseconds: 1, length: 64, clockID: 3).encode(into: &span)
            accounting.record(payload.span, from: nil, receivedAt: 1_000_001)
        }
        let published = accounting
        exposition.addSink { published }
        let samples = Self.samples(exposition.render())
        #expect(samples[#"udptun_sink_payloads_total{role="sink"}"#] == 2)
        #expect(samples[#"udptun_sink_duplicates_total{role="sink"}"#] == 1)
        #expect(samples[#"udptun_sink_lost_payloads{role="sink"}"#] == 1)
        #expect(samples[#"udptun_sink_datagrams_total{role="sink"}"#] == 3)
        // Two unique payloads, 1 ms each: the duplicate is not a latency sample.
        #expect(samples[#"udptun_sink_latency_seconds_count{role="sink"}"#] == 2)
        #expect(samples[#"udptun_sink_latency_seconds_sum{role="sink"}"#] == 0.002)
        #expect(samples[#"udptun_sink_latency_seconds_bucket{role="sink",le="0.001"}"#] == 2)
        #expect(samples[#"udptun_sink_latency_seconds_bucket{role="sink",le="0.0005"}"#] == 0)
    }
}

/// A plain TCP client for the endpoint tests: what a scraper or an attacker sends, byte for byte.
struct RawHTTP {
    let fd: Int32

    /// Connects to 127.0.0.1:`port`, from `source` (a loopback address, host order) when given.
    init(port: Int, from source: UInt32? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = source.bigEndian
            _ = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard status == 0 else {
            Glibc.close(fd)
            throw MetricsServerError(description: "connect failed: errno \(errno)")
        }
    }

    /// False once the server has closed (a send may still succeed into the socket buffer).
    @discardableResult
    func send(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Everything until the server closes (or 10 s pass): the whole answer.
    func readToEnd() -> String {
        var answer: [UInt8] = [], buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            answer += buffer[0..<count]
        }
        return String(decoding: answer, as: UTF8.self)
    }

    func close() { Glibc.close(fd) }

    /// Waits (up to 10 s) until the first byte of an answer is there, without reading it.
    func answerStarted() -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, Int32(MSG_PEEK)) == 1
    }

    static func get(_ path: String, port: Int, method: String = "GET") throws -> String {
        let client = try RawHTTP(port: port)
        defer { client.close() }
        client.send("\(method) \(path) HTTP/1.1\r\nHost: test\r\n\r\n")
        return client.readToEnd()
    }
}

@Suite("Metrics endpoint: HTTP and its limits")
struct MetricsServerTests {
    static func server(limits: MetricsServer.Limits = MetricsServer.Limits()) throws -> MetricsServer {
        let exposition = MetricsExposition(constantLabels: [("role", "test")])
        exposition.addBuildInfo(version: "1.2.3")
        return try MetricsServer(address: SocketAddress(ip: .v4(0x7F00_0001), port: 0), limits: limits) { exposition.render() }
    }

    @Test("GET /metrics answers the exposition; other paths 404, other methods 405, HEAD no body")
    func answers() throws {
        let server = try Self.server()
        defer { server.stop() }
        let ok = try RawHTTP.get("/metrics", port: server.port)
        #expect(ok.hasPrefix("HTTP/1.1 200 OK"))
        #expect(ok.contains("Content-Type: text/plain; version=0.0.4"))
        #expect(ok.contains(#"udptun_build_info{role="test",version="1.2.3"} 1"#))
        #expect(try RawHTTP.get("/metrics?x=1", port: server.port).hasPrefix("HTTP/1.1 200 OK"))
        #expect(try RawHTTP.get("/", port: server.port).hasPrefix("HTTP/1.1 404"))
        #expect(try RawHTTP.get("/metricsX", port: server.port).hasPrefix("HTTP/1.1 404"))
        #expect(try RawHTTP.get("/metrics", port: server.port, method: "POST").hasPrefix("HTTP/1.1 405"))
        let head = try RawHTTP.get("/metrics", port: server.port, method: "HEAD")
        #expect(head.hasPrefix("HTTP/1.1 200 OK") && !head.contains("udptun_build_info"))
        let headMissing = try RawHTTP.get("/nothing", port: server.port, method: "HEAD")
        #expect(headMissing.hasPrefix("HTTP/1.1 404") && headMissing.hasSuffix("\r\n\r\n"), "no body for HEAD: \(headMissing)")
    }

    @Test("garbage, huge headers and slow senders are cut off; the endpoint keeps answering")
    func hostileClients() throws {
        var limits = MetricsServer.Limits()
        limits.requestDeadline = 0.3
        let server = try Self.server(limits: limits)
        defer { server.stop() }
        // Not HTTP at all: 400, closed.
        let garbage = try RawHTTP(port: server.port)
        garbage.send("\u{1}\u{2}\u{3} nonsense\r\n\r\n")
        #expect(garbage.readToEnd().hasPrefix("HTTP/1.1 400"))
        garbage.close()
        // A header far beyond the request cap: 431, closed.
        let huge = try RawHTTP(port: server.port)
        huge.send("GET /metrics HTTP/1.1\r\nX-Filler: " + String(repeating: "a", count: 100_000))
        #expect(huge.readToEnd().hasPrefix("HTTP/1.1 431"))
        huge.close()
        // Slowloris: a request that never ends is closed at the deadline.
        let slow = try RawHTTP(port: server.port)
        slow.send("GET /metrics HTTP/1.1\r\n")
        var start = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        for _ in 0..<3 { slow.send("X-Slow: 1\r\n") }
        #expect(slow.readToEnd() == "", "closed without an answer")
        var end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &end)
        #expect(end.tv_sec - start.tv_sec < 9, "closed by the deadline, not by the test's own timeout")
        slow.close()
        #expect(try RawHTTP.get("/metrics", port: server.port).hasPrefix("HTTP/1.1 200 OK"))
    }

    @Test("beyond the limit a new connection closes the oldest unfinished request; held ones go at the deadline")
    func connectionLimit() throws {
        var limits = MetricsServer.Limits()
        limits.maximumConnections = 4
        limits.requestDeadline = 0.5
        let server = try Self.server(limits: limits)
        defer { server.stop() }
        let held = try (0..<4).map { _ in try RawHTTP(port: server.port) }
        for client in held { client.send("GET /metrics HTTP/1.1\r\n") }  // started, never finished
        #expect(held[0].readToEnd() == "", "closed at the deadline")
        let more = try (0..<4).map { _ in try RawHTTP(port: server.port) }
        for client in more { client.send("GET /metrics HTTP/1.1\r\n") }
        // A fifth: the oldest unfinished one makes room for it.
        let fifth = try RawHTTP(port: server.port)
        fifth.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(fifth.readToEnd().hasPrefix("HTTP/1.1 200 OK"), "over the limit, answered")
        fifth.close()
        for client in held + more {
            #expect(client.readToEnd() == "")
            client.close()
        }
        #expect(try RawHTTP.get("/metrics", port: server.port).hasPrefix("HTTP/1.1 200 OK"))
    }

    @Test("16 idle connections held open do not lock a scraper out; one source holds at most its share")
    func idleConnectionsDoNotLockOutAScraper() throws {
        var limits = MetricsServer.Limits()
        limits.requestDeadline = 60  // longer than the test waits: only the limits can let the scraper in
        let server = try Self.server(limits: limits)
        defer { server.stop() }
        // Four sources (127.0.0.2-5) hold four connections each: 16, the whole limit.
        let held = try (0..<16).map { index in try RawHTTP(port: server.port, from: 0x7F00_0002 + UInt32(index / 4)) }
        for client in held { client.send("GET /metrics HTTP/1.1\r\n") }
        // A 17th with a whole request, accepted after them (the backlog keeps its order), is answered.
        #expect(try RawHTTP.get("/metrics", port: server.port).hasPrefix("HTTP/1.1 200 OK"))
        let scraper = try RawHTTP(port: server.port)
        scraper.send("GET /metrics HTTP/1.1\r\nHost: prometheus\r\n\r\n")
        #expect(scraper.readToEnd().hasPrefix("HTTP/1.1 200 OK"), "and so is the next, a scraper")
        scraper.close()
        for client in held { client.close() }
        // One source opening 16: it keeps only its newest `maximumPerSource`, the older are closed.
        let flood = try (0..<16).map { _ in try RawHTTP(port: server.port, from: 0x7F00_0009) }
        for client in flood { client.send("GET /metrics HTTP/1.1\r\n") }
        for client in flood.prefix(16 - limits.maximumPerSource) {
            #expect(client.readToEnd() == "", "closed for a newer one from its source")
        }
        #expect(try RawHTTP.get("/metrics", port: server.port).hasPrefix("HTTP/1.1 200 OK"))
        for client in flood { client.close() }
    }

    @Test("16 connections that never read their large answers do not lock a scraper out")
    func slowReadersDoNotLockOutAScraper() throws {
        let large = [UInt8](repeating: UInt8(ascii: "x"), count: 16 << 20)  // more than loopback's socket buffers
        var limits = MetricsServer.Limits()
        limits.requestDeadline = 60
        let server = try MetricsServer(address: SocketAddress(ip: .v4(0x7F00_0001), port: 0), limits: limits) { large }
        defer { server.stop() }
        let held = try (0..<16).map { index in try RawHTTP(port: server.port, from: 0x7F00_0002 + UInt32(index / 4)) }
        for client in held {
            client.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(client.answerStarted())
        }
        let scraper = try RawHTTP(port: server.port)
        scraper.send("GET /metrics HTTP/1.1\r\nHost: prometheus\r\n\r\n")
        let answer = scraper.readToEnd()
        #expect(answer.hasPrefix("HTTP/1.1 200 OK") && answer.utf8.count > large.count, "the scraper gets the whole answer")
        scraper.close()
        for client in held { client.close() }
    }

    @Test("connections still being answered hold at most maximumAnswers renders; more requests share the newest")
    func answersShareRenders() throws {
        let large = [UInt8](repeating: UInt8(ascii: "x"), count: 16 << 20)  // more than loopback's socket buffers
        let renders = Atomic(0)
        let server = try MetricsServer(address: SocketAddress(ip: .v4(0x7F00_0001), port: 0)) {
            renders.add(1, ordering: .relaxed)
            return large
        }
        defer { server.stop() }
        let readers = try (0..<6).map { index in try RawHTTP(port: server.port, from: 0x7F00_0002 + UInt32(index)) }
        for reader in readers {
            reader.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(reader.answerStarted())
        }
        // All six are being answered, none has read its answer: two renders, shared.
        #expect(renders.load(ordering: .relaxed) == MetricsServer.Limits().maximumAnswers)
        for reader in readers {
            let answer = reader.readToEnd()
            #expect(answer.hasPrefix("HTTP/1.1 200 OK") && answer.utf8.count > large.count, "whole: \(answer.utf8.count) bytes")
            reader.close()
        }
        #expect(try RawHTTP.get("/metrics", port: server.port).hasPrefix("HTTP/1.1 200 OK"))
        #expect(renders.load(ordering: .relaxed) == MetricsServer.Limits().maximumAnswers + 1, "none held: a fresh render")
    }

    @Test("a request in pieces is answered once whole; a large exposition arrives whole; bare LF lines are taken")
    func piecesAndLargeAnswers() throws {
        let large = [UInt8](repeating: UInt8(ascii: "x"), count: 3 << 20)
        let server = try MetricsServer(address: SocketAddress(ip: .v4(0x7F00_0001), port: 0)) { large }
        defer { server.stop() }
        let client = try RawHTTP(port: server.port)
        for piece in ["GE", "T /metr", "ics HTTP/1.1\r\nHost: x\r\n", "\r\n"] {
            client.send(piece)
            usleep(50_000)
        }
        let answer = client.readToEnd()
        client.close()
        #expect(answer.hasPrefix("HTTP/1.1 200 OK"))
        #expect(answer.contains("Content-Length: \(large.count)\r\n"))
        #expect(answer.hasSuffix(String(repeating: "x", count: 100)) && answer.utf8.count > large.count)
        #expect(MetricsHTTP.isComplete(Array("GET /metrics HTTP/1.0\n\n".utf8)))
        #expect(!MetricsHTTP.isComplete(Array("GET /metrics HTTP/1.0\r\nHost: a\r\n".utf8)))
        for bad in [
            "GET metrics HTTP/1.1\r\n\r\n", "GET /metrics\r\n\r\n", "get /metrics HTTP/1.1\r\n\r\n", "GET /metrics SPDY/3\r\n\r\n",
            "\r\n\r\n"
        ] {
            let response = String(decoding: MetricsHTTP.response(to: Array(bad.utf8)) { [] }, as: UTF8.self)
            #expect(response.hasPrefix("HTTP/1.1 400"), "\(bad.debugDescription) → \(response)")
        }
    }

    @Test("an address that cannot be bound is a one-line error, not a crash")
    func bindFailure() throws {
        let first = try Self.server()
        defer { first.stop() }
        #expect(throws: MetricsServerError.self) { try MetricsServer(address: first.localAddress) { [] } }
        #expect(throws: MetricsServerError.self) {
            try MetricsServer(address: SocketAddress(ip: IPAddress("198.18.250.250")!, port: 0)) { [] }
        }
    }
}
