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
    static let publishInterval: UInt64 = 100_000_000

    public init(socket: UDPSocket, expected: UInt64?, deadline: UInt64?, accounting: SinkAccounting = SinkAccounting()) {
        self.socket = socket
        self.expected = expected
        self.deadline = deadline
        initial = accounting
        published = Locked(accounting)
    }

    public var accounting: SinkAccounting { published.withLock { $0 } }
    public var expectationMet: Bool { reachedExpected.load(ordering: .acquiring) }

    public func run(_ lifecycle: Lifecycle) {
        let batch = PacketBatch(slotCount: 64, slotSize: 65536)
        var accounting = initial
        var lastPublish: UInt64 = 0
        defer { published.withLock { $0 = accounting } }
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
                lastPublish = now
            }
        }
    }
}
