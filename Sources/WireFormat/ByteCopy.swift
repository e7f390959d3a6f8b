import Glibc

/// Bulk byte work the safe layers need at memcpy speed: bounds are checked here, then the copy or sum
/// runs on raw pointers.
extension MutableSpan where Element == UInt8 {
    /// Copies `source` into this span starting at `offset`.
    public mutating func copy(from source: Span<UInt8>, to offset: Int) {
        precondition(offset >= 0 && offset + source.count <= count, "copy out of bounds")
        guard !source.isEmpty else { return }
        withUnsafeMutableBytes { destination in
            source.withUnsafeBytes { bytes in
                _ = memmove(destination.baseAddress! + offset, bytes.baseAddress!, bytes.count)
            }
        }
    }
}

enum FastChecksum {
    /// The 16-bit ones'-complement sum (not complemented) of `bytes`, read as big-endian words from an
    /// even offset. Sums eight bytes per step in native order; the ones'-complement sum is independent
    /// of byte order up to a final swap (RFC 1071, section 2B).
    static func sum(_ bytes: Span<UInt8>) -> UInt16 {
        bytes.withUnsafeBytes { raw -> UInt16 in
            var accumulator: UInt64 = 0
            var index = 0
            let count = raw.count
            while index + 8 <= count {
                let (sum, overflow) = accumulator.addingReportingOverflow(raw.loadUnaligned(fromByteOffset: index, as: UInt64.self))
                accumulator = sum &+ (overflow ? 1 : 0)
                index += 8
            }
            if index < count {
                var tail: UInt64 = 0
                withUnsafeMutableBytes(of: &tail) { tailBytes in
                    for offset in 0..<(count - index) { tailBytes[offset] = raw[index + offset] }
                }
                let (sum, overflow) = accumulator.addingReportingOverflow(tail)
                accumulator = sum &+ (overflow ? 1 : 0)
            }
            var folded = (accumulator & 0xffff_ffff) &+ (accumulator >> 32)
            folded = (folded & 0xffff) &+ (folded >> 16)
            folded = (folded & 0xffff) &+ (folded >> 16)
            folded = (folded & 0xffff) &+ (folded >> 16)
            return UInt16(littleEndian: UInt16(truncatingIfNeeded: folded)).byteSwappedIfLittleEndianHost
        }
    }
}

extension UInt16 {
    /// Native-order sums of little-endian loads are byte-swapped big-endian sums.
    var byteSwappedIfLittleEndianHost: UInt16 { UInt16(bigEndian: self) }
}
