import Glibc

/// SplitMix64: a seeded generator for randomised tests, so that a failing run can be repeated.
public struct SeededGenerator: RandomNumberGenerator {
    public var state: UInt64

    public init(seed: UInt64 = TestSeed.value) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// The seed of this run's randomised tests, printed with every failure they report:
/// UDPTUN_TEST_SEED=N repeats a run; otherwise each run draws a fresh one.
public enum TestSeed {
    public static let value: UInt64 = {
        if let text = getenv("UDPTUN_TEST_SEED"), let seed = UInt64(String(cString: text)) { return seed }
        return UInt64.random(in: 0...UInt64.max)
    }()
}
