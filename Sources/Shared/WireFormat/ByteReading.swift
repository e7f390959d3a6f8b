/// Big-endian field access over a span; callers check lengths before reading.
extension Span where Element == UInt8 {
    @inlinable public func u16(at offset: Int) -> UInt16 { UInt16(self[offset]) << 8 | UInt16(self[offset + 1]) }
    @inlinable public func u32(at offset: Int) -> UInt32 { UInt32(u16(at: offset)) << 16 | UInt32(u16(at: offset + 2)) }
    @inlinable func u64(at offset: Int) -> UInt64 { UInt64(u32(at: offset)) << 32 | UInt64(u32(at: offset + 4)) }
}

extension MutableSpan where Element == UInt8 {
    @inlinable public mutating func setU16(_ value: UInt16, at offset: Int) {
        self[offset] = UInt8(value >> 8)
        self[offset + 1] = UInt8(truncatingIfNeeded: value)
    }
    @inlinable public mutating func setU32(_ value: UInt32, at offset: Int) {
        setU16(UInt16(value >> 16), at: offset)
        setU16(UInt16(truncatingIfNeeded: value), at: offset + 2)
    }
    @inlinable public mutating func setU64(_ value: UInt64, at offset: Int) {
        setU32(UInt32(value >> 32), at: offset)
        setU32(UInt32(truncatingIfNeeded: value), at: offset + 4)
    }
}
