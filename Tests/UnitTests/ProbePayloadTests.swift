import Foundation
import Testing

@testable import CLI
@testable import Measurement
@testable import Monitoring
@testable import TestSupport
@testable import WireFormat

@Suite("Generator payloads and the sink's accounting")
struct ProbePayloadTests {
    func encoded(_ probe: ProbePayload) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: probe.length)
        var span = bytes.mutableSpan
        probe.encode(into: &span)
        return bytes
    }

    @Test func crc32MatchesTheCheckValue() {
        var crc = CRC32()
        crc.update(Array("123456789".utf8).span)
        #expect(crc.value == 0xCBF4_3926)
    }

    /// Slicing-by-8 against the definition (one bit at a time), for every length up to 70 and for
    /// updates split at every point: the 8-byte steps, the tail and the carry between calls.
    @Test func crc32MatchesBitwiseDefinition() {
        func bitwise(_ bytes: [UInt8]) -> UInt32 {
            var crc: UInt32 = 0xFFFF_FFFF
            for byte in bytes {
                crc ^= UInt32(byte)
                for _ in 0..<8 { crc = crc & 1 != 0 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
            }
            return crc ^ 0xFFFF_FFFF
        }
        var generator = SeededGenerator()
        for length in 0...70 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            for split in 0...length {
                var crc = CRC32()
                crc.update(bytes.span.extracting(0..<split))
                crc.update(bytes.span.extracting(split..<length))
                #expect(crc.value == bitwise(bytes), "seed \(TestSeed.value), length \(length), split at \(split)")
            }
        }
    }

    @Test(arguments: [32, 33, 64, 512, 1400, 9000])
    func roundTrips(length: Int) {
        let probe = ProbePayload(streamID: 7, sequence: 123_456_789, sendTimeNanoseconds: 1_700_000_000_000_000_000, length: length)
        #expect(ProbePayload.decode(encoded(probe).span) == .probe(probe))
    }

    @Test func everyByteChangeIsCorruption() {
        let bytes = encoded(ProbePayload(streamID: 1, sequence: 42, sendTimeNanoseconds: 5, length: 96))
        for index in 4..<bytes.count {
            var damaged = bytes
            damaged[index] ^= 0x10
            #expect(ProbePayload.decode(damaged.span) == .corrupt, "byte \(index)")
        }
        #expect(ProbePayload.decode(Array(bytes.dropLast()).span) == .corrupt)
        #expect(ProbePayload.decode((bytes + [0]).span) == .corrupt)
        #expect(ProbePayload.decode(Array(bytes.prefix(20)).span) == .corrupt)
    }

    @Test func otherPayloadsAreUnsequenced() {
        #expect(ProbePayload.decode(Array("Hello from client".utf8).span) == .unsequenced)
        #expect(ProbePayload.decode([UInt8]().span) == .unsequenced)
        #expect(ProbePayload.decode([0x55, 0x54].span) == .unsequenced)
    }

    @Test func sequenceWindowCountsLossDuplicatesAndReordering() {
        var window = SequenceWindow()
        for sequence: UInt64 in [0, 1, 2, 4, 3, 3, 7, 5] { window.record(sequence) }
        #expect(window.unique == 7)
        #expect(window.duplicates == 1)
        #expect(window.reordered == 2)  // 3 and 5 arrived after higher numbers
        #expect(window.lost == 1)  // 6 never came
        #expect(window.record(6) == .reordered)
        #expect(window.lost == 0)
        #expect(window.record(6) == .duplicate)
    }

    @Test func sequenceWindowSlidesWithoutForgettingRecentNumbers() {
        var window = SequenceWindow()
        let far = SequenceWindow.windowSize * 3 + 17
        window.record(0)
        window.record(far)
        #expect(window.lost == far - 1)
        #expect(window.record(far - 5) == .reordered)
        #expect(window.record(far - 5) == .duplicate)
        #expect(window.record(1) == .tooOld)
        // Numbers the window slid over are gaps, not duplicates.
        #expect(window.record(far - SequenceWindow.windowSize + 1) == .reordered)
    }

    /// What a `SlidingBitmap` should answer: every number ever marked, and the highest.
    struct BitmapModel<let words: Int> {
        let size = SlidingBitmap<words>.size
        var highest: UInt64?
        var marked: Set<UInt64> = []

        func position(of number: UInt64) -> SlidingBitmap<words>.Position {
            guard let highest, number <= highest else { return .ahead }
            if highest - number >= size { return .tooOld }
            return marked.contains(number) ? .marked : .unmarked
        }

        mutating func mark(_ number: UInt64) {
            marked.insert(number)
            highest = max(highest ?? number, number)
        }
    }

    func checkAgainstModel<let words: Int>(_ bitmap: inout SlidingBitmap<words>, steps: Int, seed: UInt64) {
        var model = BitmapModel<words>()
        var random = SeededGenerator(seed: seed)
        let size = SlidingBitmap<words>.size
        for step in 0..<steps {
            let base = model.highest ?? 0
            // Mostly jumps forward of every length (within a word, across words, wrapping the ring,
            // past the whole window), sometimes a number behind the highest but inside the window (never
            // one older: what is too old is not marked).
            let number: UInt64
            switch random.next() % 4 {
            case 0: number = base + random.next() % 70
            case 1: number = base + random.next() % (2 * size)
            case 2: number = base + size - 1 - random.next() % 3
            default: number = base - min(base, random.next() % size)
            }
            bitmap.mark(number)
            model.mark(number)
            let highest = model.highest!
            let low = highest - min(highest, size + 4)
            var mismatches = 0
            for probe in low...(highest + 2) where bitmap.position(of: probe) != model.position(of: probe) { mismatches += 1 }
            #expect(bitmap.highest == highest)
            #expect(mismatches == 0, "step \(step) marking \(number) (seed \(seed))")
            if mismatches > 0 { return }
        }
    }

    @Test func slidingBitmapAgreesWithASimpleModelThroughRandomJumps() {
        var small = SlidingBitmap<4>()
        checkAgainstModel(&small, steps: 2000, seed: TestSeed.value)
        var large = SlidingBitmap<2048>()
        checkAgainstModel(&large, steps: 40, seed: TestSeed.value)
    }

    @Test func slidingBitmapClearsAMaximalJumpAWordAtATime() {
        var bitmap = SlidingBitmap<2048>()
        let size = SlidingBitmap<2048>.size
        for number in 0..<size { bitmap.mark(number) }
        // The longest jump that keeps part of the window: everything between is cleared, the ends stay.
        let top = (size - 1) + (size - 1)
        bitmap.mark(top)
        #expect(bitmap.position(of: size - 1) == .marked)
        #expect(bitmap.position(of: top) == .marked)
        #expect((size..<top).allSatisfy { bitmap.position(of: $0) == .unmarked })
        // The work: at most one write per word and one more for a run that straddles the ring's end.
        for start in [0, 1, 63, 64, 65, size - 1] as [UInt64] {
            var fresh = SlidingBitmap<2048>()
            #expect(fresh.clear(from: start, count: size - 1) <= 2048 + 1, "from \(start)")
        }
    }

    @Test func sinkAccountingTotalsStreamsAndSources() {
        var accounting = SinkAccounting(localClock: 7)
        let source = SocketAddress(ip: .v4(0xC613_0001), port: 5000)
        for sequence: UInt64 in [0, 1, 1, 3] {
            let bytes = encoded(ProbePayload(streamID: 9, sequence: sequence, sendTimeNanoseconds: 100, length: 64, clockID: 7))
            accounting.record(bytes.span, from: source, receivedAt: 50_100)
        }
        let other = encoded(ProbePayload(streamID: 10, sequence: 0, sendTimeNanoseconds: 100, length: 64, clockID: 7))
        accounting.record(other.span, from: source, receivedAt: 200_100)
        var damaged = other
        damaged[40] ^= 1
        accounting.record(damaged.span, from: source, receivedAt: 300)
        accounting.record(Array("hello".utf8).span, from: nil, receivedAt: 300)
        let totals = accounting.totals
        #expect(totals.datagrams == 7)
        #expect(totals.bytes == 6 * 64 + 5)
        #expect(totals.received == 4)
        #expect(totals.duplicates == 1)
        #expect(totals.lost == 1)
        #expect(totals.corrupt == 1)
        #expect(totals.unsequenced == 1)
        #expect(totals.streams == 2)
        #expect(accounting.sources[source]?.datagrams == 6)
        #expect(accounting.sources[source]?.bytes == 6 * 64)
        // The duplicate's latency is not recorded: 3 of stream 9, 1 of stream 10.
        #expect(accounting.latency.count == 4)
        #expect(accounting.latency.minimumMicroseconds == 50)
        #expect(accounting.latency.maximumMicroseconds == 200)
    }

    @Test func madeUpStreamIdsReplaceEachOtherNotAStreamThatKeepsSending() throws {
        var accounting = SinkAccounting()
        let source = SocketAddress(ip: .v4(0xC613_0001), port: 5000)
        func send(_ stream: UInt32, _ sequence: UInt64) {
            let bytes = encoded(ProbePayload(streamID: stream, sequence: sequence, sendTimeNanoseconds: 100, length: 64))
            accounting.record(bytes.span, from: source, receivedAt: 150)
        }
        // The flood fills the 64 slots first; then the real stream starts, and sends one payload per ten
        // made-up ones: never the least recently seen of 64.
        var sequence: UInt64 = 0
        for flood in 0..<1000 as Range<UInt32> {
            send(1_000_000 + flood, 0)
            if flood >= 100, flood % 10 == 9 { send(7, sequence); sequence += 1 }
        }
        let real = try #require(accounting.streams[7], "the real stream is still tracked")
        #expect(real.unique == sequence && real.lost == 0, "the real stream's counts survive the flood")
        let totals = accounting.totals
        #expect(totals.streams == SinkAccounting.maximumStreams)
        #expect(totals.streamsReplaced == UInt64(1000 + 1 - SinkAccounting.maximumStreams))
        // The replaced streams' payloads stay counted: every payload is unique, none unsequenced.
        #expect(totals.received == 1000 + sequence)
        #expect(totals.unsequenced == 0)
        // The report and the metrics say how many were replaced.
        let line = SinkReport(json: true).line(event: "interval", elapsed: 1, interval: 1, now: accounting, previous: nil)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect((object["streams_replaced"] as? NSNumber)?.intValue == 1000 + 1 - SinkAccounting.maximumStreams)
        let exposition = MetricsExposition(constantLabels: [])
        let published = accounting
        exposition.addSink { published }
        #expect(
            MetricsTests.samples(exposition.render())["udptun_sink_streams_replaced_total"]
                == Double(1000 + 1 - SinkAccounting.maximumStreams))
    }

    @Test func generatorPacingIsProportionalToElapsedTime() {
        #expect(ProbeGenerator.due(elapsedNanoseconds: 0, rate: 1000) == 1)
        #expect(ProbeGenerator.due(elapsedNanoseconds: 1_000_000_000, rate: 1000) == 1001)
        #expect(ProbeGenerator.due(elapsedNanoseconds: 500_000_000, rate: 10) == 6)
    }
}
