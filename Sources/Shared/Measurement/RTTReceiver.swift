import KernelIO
import Synchronization
import WireFormat

/// The thread of `--measure-rtt`: reads the reflector's answers on the generator's socket (sent from
/// it, so the answers come back to it) into an `RTTAccounting` it owns, and publishes a copy every
/// `publishInterval` and when it stops. It stops with the client, or `drainNanoseconds` after
/// `finish()` (the generator is done) so answers still in flight are counted.
public final class RTTReceiver: Sendable {
    public let socket: UDPSocket
    public static let drainNanoseconds: UInt64 = 1_000_000_000
    static let publishInterval: UInt64 = 100_000_000
    private let published: Locked<RTTAccounting>
    /// Monotonic time to stop at; 0 while the generator runs.
    private let stopAt = Atomic<UInt64>(0)
    private let stopped = Atomic<Bool>(false)

    public init(socket: UDPSocket, target: SocketAddress, streamID: UInt32) {
        self.socket = socket
        published = Locked(RTTAccounting(streamID: streamID, peer: target))
    }

    public var accounting: RTTAccounting { published.withLock { $0 } }
    /// Whether `run` has returned (its last copy published).
    public var isFinished: Bool { stopped.load(ordering: .acquiring) }

    /// The generator has sent its last probe: stop once the answers have had time to arrive.
    public func finish() {
        stopAt.store(Clock.monotonicNanoseconds() + Self.drainNanoseconds, ordering: .releasing)
    }

    public func run(_ lifecycle: Lifecycle) {
        let batch = PacketBatch(slotCount: 64, slotSize: 65536)
        var accounting = published.withLock { $0 }
        var lastPublish: UInt64 = 0
        defer {
            published.withLock { $0 = accounting }
            stopped.store(true, ordering: .releasing)
        }
        while !lifecycle.isStopping {
            let received: Int
            do {
                received = try socket.receive(into: batch, waker: lifecycle.waker, timeoutMilliseconds: 20)
            } catch {
                lifecycle.fail("--measure-rtt: UDP receive failed: \(error)")
                return
            }
            let receivedAt = Clock.wallNanoseconds()
            for slot in 0..<received {
                let source = batch.peer(of: slot)
                batch.withPacket(slot) { accounting.record($0, from: source, receivedAt: receivedAt) }
            }
            let now = Clock.monotonicNanoseconds()
            let end = stopAt.load(ordering: .acquiring)
            if end != 0, now >= end { return }
            if now &- lastPublish >= Self.publishInterval {
                published.withLock { $0 = accounting }
                lastPublish = now
            }
        }
    }
}
