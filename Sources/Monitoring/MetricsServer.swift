import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The HTTP endpoint Prometheus scrapes: `GET /metrics` answers the exposition, anything else 404
/// (405 for another method on /metrics). One SwiftNIO event-loop thread, apart from the data plane.
///
/// What a client of the port can cost is bounded: at most `maximumConnections` at once (more are
/// closed on accept), each closed `requestDeadline` after it was accepted whatever it has sent (a
/// slow sender cannot hold one open), at most `maximumRequestBytes` read from each (then closed),
/// and one request per connection (the answer says `Connection: close`).
public final class MetricsServer: Sendable {
    public struct Limits: Sendable {
        public var maximumConnections = 16
        public var requestDeadline = TimeAmount.seconds(5)
        public var maximumRequestBytes = 8192

        public init() {}
    }

    /// The address it listens on, as bound (the port is the kernel's choice for port 0).
    public let host: String
    public let port: Int
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel

    /// Listens on `host`:`port`. Throws `MetricsServerError` when the address cannot be bound.
    public init(host: String, port: Int, limits: Limits = Limits(),
                render: @escaping @Sendable () -> [UInt8]) throws(MetricsServerError) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let open = OpenConnections()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelInitializer { channel in
                guard open.enter(limits.maximumConnections) else {
                    return channel.close()
                }
                let deadline = channel.eventLoop.scheduleTask(in: limits.requestDeadline) { channel.close(promise: nil) }
                channel.closeFuture.whenComplete { _ in
                    deadline.cancel()
                    open.leave()
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RequestSizeLimit(limits.maximumRequestBytes))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(MetricsRequestHandler(render: render))
                }
            }
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw MetricsServerError(description: "cannot listen for metrics on \(Self.join(host, port)): \(error)")
        }
        self.group = group
        self.host = host
        self.port = channel.localAddress?.port ?? port
    }

    /// "HOST:PORT", with brackets around an IPv6 host.
    public var address: String { Self.join(host, port) }

    private static func join(_ host: String, _ port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    public func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

public struct MetricsServerError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

/// Connections open now; the event loop is one thread, the counter is atomic all the same.
private final class OpenConnections: Sendable {
    private let count = Atomic<Int>(0)

    func enter(_ maximum: Int) -> Bool {
        if count.wrappingAdd(1, ordering: .relaxed).newValue > maximum {
            count.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func leave() { count.wrappingSubtract(1, ordering: .relaxed) }
}

/// Closes a connection that has sent more than a request can need.
private final class RequestSizeLimit: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let maximum: Int
    private var received = 0

    init(_ maximum: Int) { self.maximum = maximum }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received += unwrapInboundIn(data).readableBytes
        guard received <= maximum else {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
    }
}

private final class MetricsRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private let render: @Sendable () -> [UInt8]
    private var request: HTTPRequestHead?

    init(render: @escaping @Sendable () -> [UInt8]) { self.render = render }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(head):
            request = head
        case .body:
            break
        case .end:
            guard let request else { return }
            self.request = nil
            respond(to: request, context: context)
        }
    }

    private func respond(to request: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = request.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        var headers = HTTPHeaders()
        headers.add(name: "Connection", value: "close")
        let status: HTTPResponseStatus, body: [UInt8]
        if path != "/metrics" {
            (status, body) = (.notFound, Array("not found: metrics are at /metrics\n".utf8))
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        } else if request.method != .GET, request.method != .HEAD {
            (status, body) = (.methodNotAllowed, Array("method not allowed\n".utf8))
            headers.add(name: "Allow", value: "GET, HEAD")
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        } else {
            (status, body) = (.ok, render())
            headers.add(name: "Content-Type", value: "text/plain; version=0.0.4; charset=utf-8")
        }
        headers.add(name: "Content-Length", value: String(body.count))
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))),
                      promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
