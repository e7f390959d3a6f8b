import Glibc
import KernelIO
import WireFormat

/// An in-memory datagram socket (after wireguard-go's bindtest): datagrams delivered by a test come
/// out of `receive` (several of equal size in one slot, as UDP GRO hands them over, when asked),
/// and what the engine sends is recorded datagram by datagram, with the messages it was sent in.
public final class FakeDatagramSocket: DatagramSocket {
    public let family: Int32
    public let udpGSOEnabled: Bool
    public var readinessDescriptor: Int32 { -1 }

    public struct Datagram: Sendable, Equatable {
        public var peer: SocketAddress
        public var bytes: [UInt8]
        /// The address it was sent from, when the engine chose one.
        public var source: IPAddress? = nil
    }

    private struct Incoming {
        var bytes: [UInt8]
        var peer: SocketAddress
        var segmentSize: Int
        var local: IPAddress? = nil
    }

    private struct State {
        var incoming: [Incoming] = []
        var sent: [Datagram] = []
        var messages = 0
        var refuseSends = false
        var receiveFailure: SystemError?
    }
    private let state = Locked(State())

    public init(family: Int32 = AF_INET, segmentation: Bool = true) {
        self.family = family
        udpGSOEnabled = segmentation
    }

    /// Queues one datagram from `peer`, sent to `local` (as a wildcard listener reports it).
    public func deliver(_ bytes: [UInt8], from peer: SocketAddress, to local: IPAddress? = nil) {
        state.withLock { $0.incoming.append(Incoming(bytes: bytes, peer: peer, segmentSize: 0, local: local)) }
    }

    /// Queues equal-sized datagrams (the last may be shorter) from `peer` in one receive slot, as UDP
    /// GRO coalesces them.
    public func deliverCoalesced(_ datagrams: [[UInt8]], from peer: SocketAddress) {
        precondition(!datagrams.isEmpty)
        state.withLock { $0.incoming.append(Incoming(bytes: datagrams.flatMap { $0 }, peer: peer, segmentSize: datagrams[0].count)) }
    }

    public var pendingCount: Int { state.withLock { $0.incoming.count } }
    /// Every datagram sent, in order.
    public var sent: [Datagram] { state.withLock { $0.sent } }
    public func clearSent() { state.withLock { $0.sent.removeAll() } }
    /// sendmmsg messages used (a UDP GSO message carries several datagrams).
    public var messages: Int { state.withLock { $0.messages } }
    /// Sends fail from now on, as toward a peer that answered with ICMP port unreachable.
    public func refuseSends(_ refuse: Bool = true) { state.withLock { $0.refuseSends = refuse } }
    public func failReceives(with error: SystemError) { state.withLock { $0.receiveFailure = error } }

    public func receive(into batch: PacketBatch) throws(SystemError) -> Int {
        let result: Result<Int, SystemError> = state.withLock { state in
            if let failure = state.receiveFailure { return .failure(failure) }
            var filled = 0
            while filled < batch.slotCount, !state.incoming.isEmpty {
                let datagram = state.incoming.removeFirst()
                batch.withMutableSlot(filled) { $0.copy(from: datagram.bytes.span, to: 0) }
                batch.setRange(0..<datagram.bytes.count, of: filled)
                batch.setReceived(filled, from: datagram.peer, at: datagram.local, segmentSize: datagram.segmentSize)
                filled += 1
            }
            batch.setCount(filled)
            return .success(filled)
        }
        return try result.get()
    }

    public func send(_ queue: SendQueue, waker: Waker?) -> SendResult {
        var result = SendResult()
        state.withLock { state in
            state.messages += queue.count
            queue.forEachDatagram { peer, source, bytes in
                if state.refuseSends {
                    result.failed += 1
                } else {
                    state.sent.append(Datagram(peer: peer, bytes: (0..<bytes.count).map { bytes[$0] }, source: source))
                    result.sent += 1
                    result.sentBytes += bytes.count
                }
            }
        }
        if result.failed > 0 { result.lastError = SystemError("sendmmsg", code: .connectionRefused) }
        queue.clear()
        return result
    }

    public func send(_ bytes: Span<UInt8>, to destination: SocketAddress, from source: IPAddress?) throws(SystemError) {
        let copy = (0..<bytes.count).map { bytes[$0] }
        let refused = state.withLock { state in
            if !state.refuseSends { state.sent.append(Datagram(peer: destination, bytes: copy, source: source)) }
            return state.refuseSends
        }
        if refused { throw SystemError("sendto \(destination)", code: .connectionRefused) }
    }
}
