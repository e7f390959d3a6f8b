import KernelIO
import Synchronization
import WireFormat

/// The HTTP endpoint Prometheus scrapes: `GET /metrics` answers the exposition, anything else 404
/// (405 for another method on /metrics). One thread of its own, apart from the data plane, waiting
/// in poll on the listener and its connections.
///
/// What a client of the port can cost is bounded: at most `maximumConnections` at once, each closed
/// `requestDeadline` after it was accepted whatever it has sent (a slow sender cannot hold one open),
/// at most `maximumRequestBytes` read from each (then answered 431 and closed), and one request per
/// connection (the answer says `Connection: close`). Idle connections cannot lock a scraper out: a
/// source (an IPv4 address, an IPv6 /64) holds at most `maximumPerSource`, and a new connection
/// beyond either limit closes the oldest one that has not sent a whole request yet (of its own
/// source, or of the source holding the most), or else the oldest still being answered there (a
/// source's only connection excepted). At most `maximumAnswers` renders of the exposition
/// are held by connections still being answered; requests beyond share the newest one.
///
/// Not SwiftNIO's HTTP/1 server: it cost each program more resident memory than the budget allows
/// (docs/BENCHMARKS.md, "Figures measured once, behind design choices").
public final class MetricsServer: Sendable {
    public struct Limits: Sendable {
        public var maximumConnections = 16
        public var requestDeadline = 5.0
        public var maximumRequestBytes = 8192
        public var maximumPerSource = 4
        public var maximumAnswers = 2

        public init() {}
    }

    /// The address it listens on, as bound (the port is the kernel's choice for port 0).
    public let localAddress: SocketAddress
    private let waker: Waker
    private let stopping: Atomic<Bool>
    private let thread: Locked<WorkerThread?>

    /// Listens on `address`. Throws `MetricsServerError` when it cannot be bound.
    public init(address: SocketAddress, limits: Limits = Limits(), render: @escaping @Sendable () -> [UInt8]) throws(MetricsServerError) {
        let listener: StreamListener
        do throws(SocketFailure) {
            listener = try StreamListener(address)
        } catch {
            throw MetricsServerError(description: "cannot listen for metrics on \(address): \(error)")
        }
        do throws(SystemError) {
            waker = try Waker()
        } catch {
            throw MetricsServerError(description: "metrics: \(error)")
        }
        localAddress = listener.localAddress ?? address
        stopping = Atomic(false)
        let loop = ServerLoop(listener: listener, limits: limits, render: render, waker: waker)
        thread = Locked(nil)
        thread.withLock { [self] in $0 = WorkerThread(name: "metrics") { loop.run(until: self) } }
    }

    public var port: Int { Int(localAddress.port) }

    fileprivate var isStopping: Bool { stopping.load(ordering: .relaxed) }

    /// Stops serving and waits for the thread (open connections are closed).
    public func stop() {
        stopping.store(true, ordering: .relaxed)
        waker.wake()
        thread.withLock { thread in
            thread?.join()
            thread = nil
        }
    }
}

public struct MetricsServerError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

/// The server's state, owned by its thread once started.
private final class ServerLoop: @unchecked Sendable {
    private final class Client {
        enum State { case reading, writing, draining, done }
        let connection: StreamConnection
        /// Where it comes from, as the per-source limit counts (nil when not known).
        let source: IPAddress?
        let deadline: UInt64
        var state = State.reading
        var request: [UInt8] = []
        var head: [UInt8] = []
        var body: [UInt8] = []
        var written = 0
        /// Which render `body` is (nil when it holds none).
        var render: Int?

        init(_ connection: StreamConnection, source: IPAddress?, deadline: UInt64) {
            self.connection = connection
            self.source = source
            self.deadline = deadline
        }
    }

    let listener: StreamListener
    let limits: MetricsServer.Limits
    let render: @Sendable () -> [UInt8]
    let polls: PollSet
    private var clients: [Client] = []
    /// The newest render while a connection holds it, and how many renders there have been.
    private var latest: (render: Int, body: [UInt8])?
    private var renders = 0

    init(listener: StreamListener, limits: MetricsServer.Limits, render: @escaping @Sendable () -> [UInt8], waker: Waker) {
        self.listener = listener
        self.limits = limits
        self.render = render
        polls = PollSet(capacity: limits.maximumConnections + 1, waker: waker)
    }

    func run(until server: MetricsServer) {
        clients.reserveCapacity(limits.maximumConnections)
        while !server.isStopping {
            polls.reset()
            let listening = polls.add(listener.fd, .read) ?? -1
            let positions = clients.map { polls.add($0.connection.fd, $0.state == .writing ? .write : .read) ?? -1 }
            let now = Clock.monotonicNanoseconds()
            let nearest = clients.map(\.deadline).min().map { $0 > now ? $0 - now : 0 } ?? 1_000_000_000
            polls.wait(timeoutMilliseconds: Int32(min(nearest / 1_000_000 + 1, 1000)))
            for (client, position) in zip(clients, positions) where polls.isReady(position) { serve(client) }
            if polls.isReady(listening) { acceptPending() }
            let after = Clock.monotonicNanoseconds()
            clients.removeAll { $0.state == .done || after >= $0.deadline }
            if let held = latest?.render, !clients.contains(where: { $0.render == held }) { latest = nil }
        }
        clients.removeAll()
    }

    /// The IPv4 address, or the IPv6 /64, a connection counts against.
    static func source(of address: IPAddress) -> IPAddress {
        switch address {
        case .v4: address
        case let .v6(high, _): .v6(high, 0)
        }
    }

    private func acceptPending() {
        let deadline = Clock.monotonicNanoseconds() + UInt64(limits.requestDeadline * 1e9)
        // A bounded number per wake-up, so a flood of connects cannot keep the loop from serving.
        for _ in 0..<64 {
            guard let connection = try? listener.accept() else { return }
            let source = connection.peer.map { Self.source(of: $0.ip) }
            let fromSource = source.map { source in clients.count { $0.source == source } } ?? 0
            // Over a limit: room is made by closing another connection, or the new one is closed.
            if fromSource >= limits.maximumPerSource {
                guard closeOldest(from: source) else { continue }
            } else if clients.count >= limits.maximumConnections {
                guard closeOldest(from: nil) else { continue }
            }
            clients.append(Client(connection, source: source, deadline: deadline))
        }
    }

    /// Closes the oldest connection that has not sent a whole request, of `source` or (nil) of the
    /// source holding the most connections. When every one has, the oldest of `source` still being
    /// answered, or (nil) of the busiest source if it holds several: slow readers cannot lock a
    /// scraper out either, and a source's only connection is never cut under its answer. False
    /// when there is none to close.
    private func closeOldest(from source: IPAddress?) -> Bool {
        var held: [IPAddress?: Int] = [:]
        for client in clients { held[client.source, default: 0] += 1 }
        func oldest(unfinished: Bool) -> Int? {
            var chosen: Int?
            for (index, client) in clients.enumerated() where (client.state == .reading) == unfinished {
                if let source, client.source != source { continue }
                // Accepted in order: the first of the busiest source is its oldest.
                if let best = chosen, held[clients[best].source]! >= held[client.source]! { continue }
                chosen = index
            }
            return chosen
        }
        var chosen = oldest(unfinished: true)
        if chosen == nil, let answering = oldest(unfinished: false), source != nil || held[clients[answering].source]! > 1 {
            chosen = answering
        }
        guard let chosen else { return false }
        clients.remove(at: chosen)
        return true
    }

    private func serve(_ client: Client) {
        do throws(SystemError) {
            switch client.state {
            case .reading:
                let room = limits.maximumRequestBytes + 1 - client.request.count
                guard let count = try client.connection.read(appendingTo: &client.request, limit: room) else { return }
                if count == 0 { client.state = .done; return }
                if client.request.count > limits.maximumRequestBytes {
                    answer(client, (MetricsHTTP.tooLarge(), []))
                } else if MetricsHTTP.isComplete(client.request) {
                    answer(client, MetricsHTTP.parts(of: client.request) { shared(for: client) })
                }
            case .writing:
                if client.written < client.head.count {
                    client.written += try client.connection.write(client.head[client.written...])
                } else {
                    client.written += try client.connection.write(client.body[(client.written - client.head.count)...])
                }
                if client.written == client.head.count + client.body.count { finishWriting(client) }
            case .draining:
                // What the client still sends is read and dropped until it closes, so closing never
                // resets the connection under an answer it has not read yet.
                var discard: [UInt8] = []
                if try client.connection.read(appendingTo: &discard, limit: 4096) == 0 { client.state = .done }
            case .done:
                return
            }
        } catch {
            client.state = .done
        }
    }

    /// The exposition for `client`: a new render, or the newest one when `maximumAnswers` renders
    /// are held by connections still being answered (then no more memory is taken).
    private func shared(for client: Client) -> [UInt8] {
        var held = Set<Int>()
        for other in clients where other.state == .writing { if let render = other.render { held.insert(render) } }
        if let latest, held.count >= limits.maximumAnswers {
            client.render = latest.render
            return latest.body
        }
        renders += 1
        latest = (renders, render())
        client.render = renders
        return latest!.body
    }

    private func answer(_ client: Client, _ response: (head: [UInt8], body: [UInt8])) {
        client.request = []
        client.head = response.head
        client.body = response.body
        if client.body.isEmpty { client.render = nil }
        client.state = .writing
        serve(client)
    }

    private func finishWriting(_ client: Client) {
        client.head = []
        client.body = []
        client.render = nil
        client.connection.shutdownWrites()
        client.state = .draining
    }
}

/// HTTP/1.x requests and answers, as much of them as a metrics endpoint needs.
public enum MetricsHTTP {
    /// The header block has ended (a blank line).
    public static func isComplete(_ request: [UInt8]) -> Bool {
        let bytes = request.span
        var index = 0
        while index + 1 < bytes.count {
            if bytes[index] == 10 {
                if bytes[index + 1] == 10 { return true }
                if bytes[index + 1] == 13, index + 2 < bytes.count, bytes[index + 2] == 10 { return true }
            }
            index += 1
        }
        return false
    }

    /// The whole answer to a complete request (`render` makes the exposition).
    public static func response(to request: [UInt8], render: () -> [UInt8]) -> [UInt8] {
        let (head, body) = parts(of: request, render: render)
        return head + body
    }

    /// The answer as its head and its body (the exposition as `render` returned it, not copied).
    static func parts(of request: [UInt8], render: () -> [UInt8]) -> (head: [UInt8], body: [UInt8]) {
        let firstLine = request.prefix { $0 != 10 }
        let parts = String(decoding: firstLine, as: UTF8.self).trimmingSuffix("\r").split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[1].hasPrefix("/"), parts[2].hasPrefix("HTTP/1."),
            !parts[0].isEmpty, parts[0].allSatisfy({ $0.isUppercase })
        else {
            return answer(400, "Bad Request", text: "bad request\n")
        }
        let method = parts[0], path = parts[1].prefix { $0 != "?" }
        // An answer to HEAD carries the headers of the answer to GET, no body.
        let withBody = method != "HEAD"
        guard path == "/metrics" else {
            return answer(404, "Not Found", text: "not found: metrics are at /metrics\n", withBody: withBody)
        }
        guard method == "GET" || method == "HEAD" else {
            return answer(405, "Method Not Allowed", text: "method not allowed\n", headers: "Allow: GET, HEAD\r\n")
        }
        return answer(200, "OK", body: render(), type: "text/plain; version=0.0.4; charset=utf-8", withBody: withBody)
    }

    static func tooLarge() -> [UInt8] {
        let (head, body) = answer(431, "Request Header Fields Too Large", text: "request too large\n")
        return head + body
    }

    private static func answer(
        _ status: Int, _ reason: String, text: String, headers: String = "",
        withBody: Bool = true
    ) -> (head: [UInt8], body: [UInt8]) {
        answer(status, reason, body: Array(text.utf8), type: "text/plain; charset=utf-8", headers: headers, withBody: withBody)
    }

    private static func answer(
        _ status: Int, _ reason: String, body: [UInt8], type: String, headers: String = "",
        withBody: Bool = true
    ) -> (head: [UInt8], body: [UInt8]) {
        let head =
            "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(type)\r\nContent-Length: \(body.count)\r\n"
            + headers + "Connection: close\r\n\r\n"
        return (Array(head.utf8), withBody ? body : [])
    }
}

private extension String {
    func trimmingSuffix(_ suffix: String) -> Substring { hasSuffix(suffix) ? dropLast(suffix.count) : Substring(self) }
}
