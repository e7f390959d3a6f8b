import Glibc

/// A coalesced super-packet as pieces for one writev: its rewritten headers, then each member
/// packet's payload where that packet lies (the receive batch it arrived in), so that coalescing
/// copies no payload byte and the kernel's write is the only copy. Allocated once per writer.
///
/// The pieces are remembered by address: whoever appends bytes keeps them in place, unchanged,
/// until the list is `reset` (the engine writes each batch's packets, then flushes, before it
/// receives into the batch again).
public final class GatherList {
    /// Room for the virtio-net header and the headers in front of the payloads.
    static let leadingVectors = 2
    public let capacity: Int
    let vectors: UnsafeMutablePointer<iovec>
    /// The payload count, behind a pointer (docs/design.md, "No exclusivity check per packet").
    private let storedCount: UnsafeMutablePointer<Int>

    /// A list of up to `capacity` payloads.
    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        vectors = .allocate(capacity: capacity + Self.leadingVectors)
        vectors.initialize(repeating: iovec(), count: capacity + Self.leadingVectors)
        storedCount = .allocate(capacity: 1)
        storedCount.initialize(to: 0)
    }

    deinit {
        vectors.deallocate()
        storedCount.deallocate()
    }

    /// Payloads in the list.
    public var count: Int { storedCount.pointee }

    /// Adds `bytes`, which must stay where they are, unchanged, until `reset`.
    public func append(_ bytes: Span<UInt8>) {
        precondition(storedCount.pointee < capacity, "gather list full")
        bytes.withUnsafeBytes { raw in
            vectors[Self.leadingVectors + storedCount.pointee] =
                iovec(iov_base: UnsafeMutableRawPointer(mutating: raw.baseAddress), iov_len: raw.count)
        }
        storedCount.pointee += 1
    }

    public func reset() { storedCount.pointee = 0 }

    /// Runs `body` with payload `index` (which must be in the list).
    public func withPayload<R>(_ index: Int, _ body: (Span<UInt8>) -> R) -> R {
        precondition(index >= 0 && index < storedCount.pointee, "no such payload")
        let vector = vectors[Self.leadingVectors + index]
        return body(UnsafeRawBufferPointer(start: vector.iov_base, count: vector.iov_len).bindMemory(to: UInt8.self).span)
    }

    /// Each payload in order (for in-memory devices in tests).
    public func forEachPayload(_ body: (Span<UInt8>) -> Void) {
        for index in 0..<storedCount.pointee {
            let vector = vectors[Self.leadingVectors + index]
            guard let base = vector.iov_base else { continue }
            body(UnsafeRawBufferPointer(start: base, count: vector.iov_len).bindMemory(to: UInt8.self).span)
        }
    }

    /// Runs `body` with the iovecs of `prefix` (the virtio-net header, when there is one), `headers`
    /// and the payloads, and their number.
    func withVectors<R>(
        prefix: UnsafeRawBufferPointer?, headers: Span<UInt8>,
        _ body: (UnsafePointer<iovec>, Int) throws(SystemError) -> R
    ) throws(SystemError) -> R {
        try headers.withUnsafeBytes { headerBytes throws(SystemError) in
            vectors[1] = iovec(iov_base: UnsafeMutableRawPointer(mutating: headerBytes.baseAddress), iov_len: headerBytes.count)
            if let prefix {
                vectors[0] = iovec(iov_base: UnsafeMutableRawPointer(mutating: prefix.baseAddress), iov_len: prefix.count)
                return try body(vectors, storedCount.pointee + 2)
            }
            return try body(vectors + 1, storedCount.pointee + 1)
        }
    }
}
