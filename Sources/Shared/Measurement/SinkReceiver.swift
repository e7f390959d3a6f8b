import KernelIO
import Synchronization
import WireFormat

/// The sink's receive loop: counts every datagram into a `SinkAccounting` it owns, and publishes a
/// copy for the reporter every `publishInterval` and when it stops.
public final class SinkReceiver: Sendable {
    public let socket: UDPSocket
    /// Stop after this many unique generator payloads (nil: run until stopped).
    public let expected: UInt64?
    /// Monotonic deadline (nanoseconds) after which the receiver stops.
    public let deadline: UInt64?
    // A pthread mutex, not Synchronization's: the metrics endpoint reads it from another thread, and
    // ThreadSanitizer can see only the former (see `Locked`).
    // Each copy shares the histograms' storage, so the receive thread copies a histogram (about
    // 20 KB) the first time it records into it after a publish: at most 65 copies per interval,
    // never one per datagram.
    private let published: Locked<SinkAccounting>
    /// What the receive loop starts counting into (its clock settings).
    private let initial: SinkAccounting
    private let reachedExpected = Atomic<Bool>(false)
    /// `--reflect`: the reflect decision, which each answer goes by (nil: no answers).
    public let reflector: Reflector?
    private let publishedReflector = Locked(ReflectorCounts())
    static let publishInterval: UInt64 = 100_000_000

    public init(
        socket: UDPSocket, expected: UInt64?, deadline: UInt64?, accounting: SinkAccounting = SinkAccounting(),
        reflector: Reflector? = nil
    ) {
        self.socket = socket
        self.expected = expected
        self.deadline = deadline
        initial = accounting
        published = Locked(accounting)
        self.reflector = reflector
    }

    public var accounting: SinkAccounting { published.withLock { $0 } }
    /// What the reflector did; nil without `--reflect`.
    public var reflectorCounts: ReflectorCounts? { reflector == nil ? nil : publishedReflector.withLock { $0 } }
    public var expectationMet: Bool { reachedExpected.load(ordering: .acquiring) }

    public func run(_ lifecycle: Lifecycle) {
        let batch = PacketBatch(slotCount: 64, slotSize: 65536)
        var accounting = initial
        var lastPublish: UInt64 = 0
        var answers = reflector.map { Answers($0) }
        defer {
            published.withLock { $0 = accounting }
            if let answers { publishedReflector.withLock { $0 = answers.reflector.counts } }
        }
        while !lifecycle.isStopping {
            let received: Int
            do {
                received = try socket.receive(into: batch, waker: lifecycle.waker, timeoutMilliseconds: 100)
            } catch {
                lifecycle.fail("UDP receive failed: \(error)")
                return
            }
            let receivedAt = Clock.wallNanoseconds()
            for slot in 0..<received {
                let source = batch.peer(of: slot)
                batch.withPacket(slot) { accounting.record($0, from: source, receivedAt: receivedAt) }
            }
            if answers != nil { answers!.answer(batch, count: received, on: socket, waker: lifecycle.waker) }
            let now = Clock.monotonicNanoseconds()
            if let expected, received > 0, accounting.totals.received >= expected {
                reachedExpected.store(true, ordering: .releasing)
                lifecycle.stop()
                return
            }
            if let deadline, now >= deadline {
                lifecycle.stop()
                return
            }
            if now &- lastPublish >= Self.publishInterval {
                published.withLock { $0 = accounting }
                if let answers { publishedReflector.withLock { $0 = answers.reflector.counts } }
                lastPublish = now
            }
        }
    }

    /// The answers to one received batch, built in a batch of their own allocated once and sent in
    /// one sendmmsg, each from the address its probe was sent to.
    struct Answers {
        var reflector: Reflector
        let batch = PacketBatch(slotCount: 64, slotSize: 65536)
        let queue = SendQueue(capacity: 64)

        init(_ reflector: Reflector) { self.reflector = reflector }

        mutating func answer(_ received: PacketBatch, count: Int, on socket: UDPSocket, waker: Waker) {
            let now = Clock.monotonicNanoseconds()
            for slot in 0..<min(count, batch.slotCount) {
                let source = received.peer(of: slot)
                let decision = received.withPacket(slot) { payload in
                    batch.withMutableSlot(queue.count) { reflector.reflect(payload, from: source, now: now, into: &$0) }
                }
                if case let .answer(length) = decision, let source {
                    queue.append(
                        batch, slot: queue.count, range: 0..<length, to: source, from: received.localAddress(of: slot),
                        family: socket.family)
                }
            }
            if queue.count > 0 { reflector.sendFailed(socket.send(queue, waker: waker).failed) }
        }
    }
}
