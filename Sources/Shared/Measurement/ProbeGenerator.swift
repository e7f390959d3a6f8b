import KernelIO
import WireFormat

/// The client's built-in traffic source: ordinary UDP datagrams carrying `ProbePayload`s, sent
/// through the kernel (which routes them into the tunnel) at a paced rate, bounded by count and time.
public struct ProbeGenerator: Sendable {
    public var target: SocketAddress
    /// 0 = unbounded (then `duration` or a signal ends it).
    public var count: UInt64
    /// Packets per second; 0 = as fast as the socket takes them.
    public var rate: Double
    public var size: Int
    /// Seconds; nil = no limit.
    public var duration: Double?
    public var streamID: UInt32
    /// Names this host's wall clock in every payload, so the sink shows one-way latency only when
    /// it shares the clock (`ClockIdentity`).
    public var clockID: UInt16

    public static let batchSize = 32

    public init(
        target: SocketAddress, count: UInt64, rate: Double, size: Int, duration: Double?, streamID: UInt32,
        clockID: UInt16 = ClockIdentity.local()
    ) {
        self.target = target
        self.count = count
        self.rate = rate
        self.size = size
        self.duration = duration
        self.streamID = streamID
        self.clockID = clockID
    }

    public final class Counters: Sendable {
        public let sent = Counter()
        public let sentBytes = Counter()
        public let failed = Counter()
        public init() {}
    }

    /// How many probes are due `elapsed` nanoseconds after start (pacing).
    static func due(elapsedNanoseconds: UInt64, rate: Double) -> UInt64 {
        UInt64(Double(elapsedNanoseconds) * rate / 1e9) + 1
    }

    /// Sends until done or stopped; returns how many were sent.
    @discardableResult
    /// `sendFailed` hears of each new kind of send error (not every failed send).
    public func run(_ lifecycle: Lifecycle, counters: Counters, sendFailed: (SystemError) -> Void = { _ in }) -> UInt64 {
        let socket: UDPSocket
        do {
            socket = try openSocket()
        } catch {
            lifecycle.fail("generator: \(error)")
            return 0
        }
        return run(lifecycle, counters: counters, socket: socket, sendFailed: sendFailed)
    }

    /// The socket the generator sends from (unbound: the kernel picks a port on the first send).
    public func openSocket() throws(SocketFailure) -> UDPSocket { try UDPSocket(for: target, bind: false) }

    /// Sends from `socket` (from `openSocket`), which another thread may read (`--measure-rtt`).
    @discardableResult
    public func run(
        _ lifecycle: Lifecycle, counters: Counters, socket: UDPSocket, sendFailed: (SystemError) -> Void = { _ in }
    ) -> UInt64 {
        let batch = PacketBatch(slotCount: Self.batchSize, slotSize: max(size, ProbePayload.headerLength))
        let queue = SendQueue(capacity: Self.batchSize)
        let start = Clock.monotonicNanoseconds()
        let deadline = duration.map { start + UInt64($0 * 1e9) }
        var sequence: UInt64 = 0
        var lastError: SystemError?
        while !lifecycle.isStopping {
            if count != 0, sequence >= count { break }
            let now = Clock.monotonicNanoseconds()
            if let deadline, now >= deadline { break }
            var burst = UInt64(Self.batchSize)
            if rate > 0 {
                let due = Self.due(elapsedNanoseconds: now - start, rate: rate)
                if due <= sequence {
                    let next = UInt64(Double(sequence) * 1e9 / rate) + start
                    Clock.sleep(nanoseconds: min(max(next > now ? next - now : 0, 20_000), 50_000_000))
                    continue
                }
                burst = min(burst, due - sequence)
            }
            if count != 0 { burst = min(burst, count - sequence) }
            let wallNow = Clock.wallNanoseconds()
            for slot in 0..<Int(burst) {
                let probe = ProbePayload(
                    streamID: streamID, sequence: sequence + UInt64(slot),
                    sendTimeNanoseconds: wallNow, length: size, clockID: clockID)
                batch.withMutableSlot(slot) { probe.encode(into: &$0) }
                queue.append(batch, slot: slot, range: 0..<size, to: target, family: socket.family)
            }
            let result = socket.send(queue, waker: lifecycle.waker)
            sequence += burst
            counters.sent.add(result.sent)
            counters.sentBytes.add(result.sentBytes)
            counters.failed.add(result.failed)
            if let error = result.lastError, lastError?.code != error.code {
                sendFailed(error)
                lastError = error
            }
        }
        return counters.sent.load
    }
}
