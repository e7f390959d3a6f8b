import TestSupport
import Testing
import WireFormat

@Suite("PrefixSet: the per-packet form of a prefix list")
struct PrefixSetTests {
    @Test("answers as IPPrefix.contains does, for random prefixes and addresses of both families, IPv4-mapped included")
    func agreesWithIPPrefix() {
        var random = SeededGenerator(seed: 0x5EED_0042)
        func address(_ v4: Bool) -> IPAddress {
            v4
                ? .v4(UInt32.random(in: 0...UInt32.max, using: &random))
                : .v6(.random(in: 0...UInt64.max, using: &random), .random(in: 0...UInt64.max, using: &random))
        }
        for _ in 0..<200 {
            var prefixes: [IPPrefix] = []
            for _ in 0..<Int.random(in: 0...12, using: &random) {
                let v4 = Bool.random(using: &random)
                prefixes.append(IPPrefix(address: address(v4), length: Int.random(in: 0...(v4 ? 32 : 128), using: &random))!)
            }
            let set = PrefixSet(prefixes)
            for _ in 0..<200 {
                // Near a prefix half the time, so matches are common; a third of IPv4 ones as mapped.
                var candidate = address(Bool.random(using: &random))
                if let near = prefixes.randomElement(using: &random), Bool.random(using: &random) {
                    switch (near.address, candidate) {
                    case let (.v4(network), .v4(bits)): candidate = .v4(network | (bits & 0xff))
                    case let (.v6(high, _), .v6(_, low)): candidate = .v6(high, low)
                    default: break
                    }
                }
                if Int.random(in: 0..<3, using: &random) == 0 { candidate = candidate.mappedToIPv6 }
                #expect(set.contains(candidate) == prefixes.contains { $0.contains(candidate) }, "\(candidate) in \(prefixes)")
            }
        }
        #expect(!PrefixSet().contains(IPAddress("198.18.1.1")!))
        #expect(PrefixSet([IPPrefix("198.18.0.0/15")!]).contains(IPAddress("::ffff:198.19.0.1")!))
    }
}
