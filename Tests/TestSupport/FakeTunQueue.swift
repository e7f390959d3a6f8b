import Glibc
import KernelIO
import WireFormat

/// An in-memory TUN queue (after wireguard-go's tuntest): frames injected by a test come out of
/// `readFrames` in order, frames written go to `written`. With `virtioHeaders` every frame carries a
/// virtio-net header, as a device with offloads does, so the TUN layer's offload handling runs
/// exactly as against the kernel.
public final class FakeTunQueue: TunQueue {
    public let name: String
    public let hasVirtioHeaders: Bool
    public let acceptsUDPSegmentation: Bool
    public var readinessDescriptor: Int32 { -1 }

    public struct Frame: Sendable, Equatable {
        public var header: VirtioNetHeader
        public var packet: [UInt8]
        /// For a gathered write (headers, then payloads where they lay): the payloads; 0 for a
        /// packet written whole.
        public var gatheredPayloads = 0
    }

    private struct State {
        var pending: [[UInt8]] = []
        var written: [Frame] = []
        var readFailure: SystemError?
        var writeFailure: SystemError?
        var removed = false
    }
    private let state = Locked(State())

    public init(name: String = "faketun", virtioHeaders: Bool = false, udpSegmentation: Bool = false) {
        self.name = name
        hasVirtioHeaders = virtioHeaders
        acceptsUDPSegmentation = udpSegmentation
    }

    /// Queues `packet` for reading, behind `header` on a queue with virtio-net headers (a plain
    /// header then means a packet with nothing left to do).
    public func inject(_ packet: [UInt8], header: VirtioNetHeader = .plain) {
        var frame: [UInt8] = []
        if hasVirtioHeaders {
            frame = [UInt8](repeating: 0, count: VirtioNetHeader.length)
            var span = frame.mutableSpan
            header.encode(into: &span)
        }
        injectFrame(frame + packet)
    }

    /// Queues raw frame bytes (a malformed frame, say).
    public func injectFrame(_ frame: [UInt8]) { state.withLock { $0.pending.append(frame) } }

    public var pendingCount: Int { state.withLock { $0.pending.count } }
    public var written: [Frame] { state.withLock { $0.written } }

    /// The next read (or write) fails with `error`, as a deleted device's would.
    public func failReads(with error: SystemError) { state.withLock { $0.readFailure = error } }
    public func failWrites(with error: SystemError) { state.withLock { $0.writeFailure = error } }
    /// Reads and writes work again (a device that was down is up).
    public func heal() {
        state.withLock {
            $0.readFailure = nil; $0.writeFailure = nil
        }
    }
    /// The device no longer exists (deleted), as `isPresent` then tells.
    public func remove() { state.withLock { $0.removed = true } }
    public var isPresent: Bool { state.withLock { !$0.removed } }

    public func readFrames(into batch: PacketBatch, slots: Range<Int>, offset: Int) throws(SystemError) -> Int {
        let result: Result<Int, SystemError> = state.withLock { state in
            if let failure = state.readFailure { return .failure(failure) }
            var filled = 0
            for slot in slots {
                guard !state.pending.isEmpty else { break }
                let frame = state.pending.removeFirst()
                precondition(offset + frame.count <= batch.slotSize, "frame larger than a slot")
                batch.withMutableSlot(slot) { $0.copy(from: frame.span, to: offset) }
                batch.setRange(offset..<(offset + frame.count), of: slot)
                filled += 1
            }
            return .success(filled)
        }
        return try result.get()
    }

    /// Records the frame as the kernel would see it: the headers and payloads joined.
    public func writeFrame(headers: Span<UInt8>, payloads: GatherList, header: VirtioNetHeader) throws(SystemError) {
        var bytes = (0..<headers.count).map { headers[$0] }
        payloads.forEachPayload { payload in bytes += (0..<payload.count).map { payload[$0] } }
        try record(Frame(header: hasVirtioHeaders ? header : .plain, packet: bytes, gatheredPayloads: payloads.count))
    }

    public func writeFrame(_ packet: Span<UInt8>, header: VirtioNetHeader) throws(SystemError) {
        try record(Frame(header: hasVirtioHeaders ? header : .plain, packet: (0..<packet.count).map { packet[$0] }))
    }

    private func record(_ frame: Frame) throws(SystemError) {
        let failure: SystemError? = state.withLock { state in
            if let failure = state.writeFailure { return failure }
            state.written.append(frame)
            return nil
        }
        if let failure { throw failure }
    }
}
