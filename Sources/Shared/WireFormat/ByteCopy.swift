import Glibc

/// Bulk byte copies the safe layers need at memcpy speed: bounds are checked here, then the copy runs
/// on raw pointers (the checksum's sum, the other such routine, is in FastChecksum.swift).
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
