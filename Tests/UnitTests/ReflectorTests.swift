import Engine
import Foundation
import Testing

@testable import CLI
@testable import Measurement
@testable import TestSupport
@testable import WireFormat

@Suite("The sink's reflector and the generator's round trips (--reflect, --measure-rtt)")
struct ReflectorTests {
    static let client = SocketAddress(ip: IPAddress("198.19.0.1")!, port: 40000)
    static let sink = SocketAddress(ip: IPAddress("198.18.2.2")!, port: 8080)
    static let second: UInt64 = 1_000_000_000

    func probe(_ sequence: UInt64, stream: UInt32 = 7, length: Int = 64, sentAt: UInt64 = 1_000) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: length)
        var span = bytes.mutableSpan
        ProbePayload(streamID: stream, sequence: sequence, sendTimeNanoseconds: sentAt, length: length).encode(into: &span)
        return bytes
    }

    func encoded(_ answer: ProbeAnswer) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: answer.length)
        var span = bytes.mutableSpan
        answer.encode(into: &span)
        return bytes
    }

    /// The reflector's decision on `payload`, and the answer it wrote (empty when none).
    func reflect(
        _ reflector: inout Reflector, _ payload: [UInt8], from source: SocketAddress? = client, at now: UInt64 = 0
    ) -> (Reflector.Decision, [UInt8]) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var span = buffer.mutableSpan
        let decision = reflector.reflect(payload.span, from: source, now: now, into: &span)
        guard case let .answer(length) = decision else { return (decision, []) }
        return (decision, Array(buffer[0..<length]))
    }

    func decodedAnswer(_ bytes: [UInt8]) -> ProbeAnswer? {
        if case let .answer(answer) = ProbeAnswer.decode(bytes.span) { return answer }
        return nil
    }

    // MARK: The answer's format

    @Test(arguments: [48, 49, 64, 512, 1400, 9000])
    func answerRoundTrips(length: Int) {
        let answer = ProbeAnswer(
            streamID: 9, sequence: 123_456_789, sendTimeNanoseconds: 1_700_000_000_000_000_000, reflectorReceived: 1000,
            answerSequence: 998, length: length)
        #expect(ProbeAnswer.decode(encoded(answer).span) == .answer(answer))
    }

    @Test func everyByteChangeOfAnAnswerIsCorruption() {
        let bytes = encoded(
            ProbeAnswer(streamID: 1, sequence: 42, sendTimeNanoseconds: 5, reflectorReceived: 43, answerSequence: 40, length: 96))
        for index in 4..<bytes.count {
            var damaged = bytes
            damaged[index] ^= 0x01
            #expect(ProbeAnswer.decode(damaged.span) == .corrupt, "byte \(index)")
        }
        #expect(ProbeAnswer.decode(bytes.span.extracting(0..<95)) == .corrupt)
        #expect(ProbeAnswer.decode((bytes + [0]).span) == .corrupt)
        #expect(ProbeAnswer.decode(bytes.span.extracting(0..<20)) == .corrupt)
    }

    @Test func answersAndProbesAreNeverTakenForEachOther() {
        let answer = encoded(
            ProbeAnswer(streamID: 1, sequence: 2, sendTimeNanoseconds: 3, reflectorReceived: 3, answerSequence: 2, length: 64))
        #expect(ProbePayload.decode(answer.span) == .unsequenced)
        #expect(ProbeAnswer.decode(probe(2).span) == .other)
        // So a reflector never answers an answer (two reflectors cannot ping-pong).
        var reflector = Reflector()
        #expect(reflect(&reflector, answer).0 == .notProbe)
    }

    // MARK: The reflect decision

    @Test func answersEchoTheProbeAndCountPerStream() throws {
        var reflector = Reflector()
        let (first, firstBytes) = reflect(&reflector, probe(0, sentAt: 111))
        #expect(first == .answer(length: 64))
        let answer = try #require(decodedAnswer(firstBytes))
        #expect(answer.streamID == 7 && answer.sequence == 0 && answer.sendTimeNanoseconds == 111)
        #expect(answer.reflectorReceived == 1 && answer.answerSequence == 0)
        _ = reflect(&reflector, probe(1))
        let third = try #require(decodedAnswer(reflect(&reflector, probe(5, sentAt: 222)).1))
        #expect(third.sequence == 5 && third.sendTimeNanoseconds == 222 && third.reflectorReceived == 3 && third.answerSequence == 2)
        // Another stream of the same sender, and the same stream from another port, count on their own.
        let other = try #require(decodedAnswer(reflect(&reflector, probe(0, stream: 8)).1))
        #expect(other.reflectorReceived == 1 && other.answerSequence == 0)
        let otherPort = SocketAddress(ip: Self.client.ip, port: 40001)
        #expect(decodedAnswer(reflect(&reflector, probe(0), from: otherPort).1)?.reflectorReceived == 1)
        #expect(reflector.counts.reflected == 5)
    }

    @Test func shortProbesGetAnswersAsLongAsTheHeader() throws {
        var reflector = Reflector()
        let (decision, bytes) = reflect(&reflector, probe(3, length: 32))
        #expect(decision == .answer(length: ProbeAnswer.headerLength))
        #expect(try #require(decodedAnswer(bytes)).sequence == 3)
    }

    @Test func nonProbesAndCorruptProbesGetNothing() {
        var reflector = Reflector()
        var damaged = probe(4)
        damaged[40] ^= 0xff
        var generator = SeededGenerator()
        let garbage = (0..<100).map { _ in UInt8.random(in: 0...255, using: &generator) }
        for payload in [damaged, garbage, [], Array("hello".utf8), Array(probe(5).prefix(31))] {
            #expect(reflect(&reflector, payload).0 == .notProbe, "seed \(TestSeed.value)")
        }
        #expect(reflector.counts == ReflectorCounts())
    }

    @Test func onlyAllowedSourcesAreAnswered() {
        var reflector = Reflector(allowed: [IPPrefix("198.19.0.0/24")!, IPPrefix("2001:db8:1::/48")!])
        #expect(reflect(&reflector, probe(0)).0 == .answer(length: 64))
        let outside = SocketAddress(ip: IPAddress("198.19.1.1")!, port: 40000)
        #expect(reflect(&reflector, probe(0), from: outside).0 == .refusedAllow)
        let mapped = SocketAddress(ip: IPAddress("::ffff:198.19.0.9")!, port: 40000)
        #expect(reflect(&reflector, probe(0), from: mapped).0 == .answer(length: 64))
        let v6 = SocketAddress(ip: IPAddress("2001:db8:1::5")!, port: 1)
        #expect(reflect(&reflector, probe(0), from: v6).0 == .answer(length: 64))
        let v6Outside = SocketAddress(ip: IPAddress("2001:db8:2::5")!, port: 1)
        #expect(reflect(&reflector, probe(0), from: v6Outside).0 == .refusedAllow)
        #expect(reflector.counts.refusedAllow == 2 && reflector.counts.reflected == 3)
        // Refused probes are not counted as received: the sender sees them as lost on the way out.
        #expect(decodedAnswer(reflect(&reflector, probe(1)).1)?.reflectorReceived == 2)
    }

    @Test(
        arguments: [
            ("198.19.0.1", 0), ("0.0.0.0", 5), ("0.1.2.3", 5), ("224.0.0.1", 5), ("239.255.255.250", 5), ("255.255.255.255", 5),
            ("240.0.0.1", 5), ("::", 5), ("ff02::1", 5), ("::ffff:224.0.0.1", 5)
        ] as [(String, UInt16)])
    func neverToPortZeroOrNonUnicast(address: String, port: UInt16) throws {
        let source = SocketAddress(ip: try #require(IPAddress(address)), port: port)
        var reflector = Reflector()
        #expect(reflect(&reflector, probe(0), from: source).0 == .refusedAddress)
        #expect(reflector.counts.refusedAddress == 1 && reflector.counts.reflected == 0)
    }

    @Test func aDatagramWithoutASourceIsNotAnswered() {
        var reflector = Reflector()
        #expect(reflect(&reflector, probe(0), from: nil).0 == .refusedAddress)
    }

    @Test func theRateLimitHoldsPerSourceAddress() throws {
        var reflector = Reflector(rate: 100, burst: 32)
        var decisions: [Reflector.Decision] = []
        for sequence in 0..<40 { decisions.append(reflect(&reflector, probe(UInt64(sequence)), at: 5).0) }
        #expect(decisions.filter { $0 == .answer(length: 64) }.count == 32)
        #expect(reflector.counts.refusedRate == 8)
        // Another port of the same address draws on the same bucket; another address has its own.
        #expect(reflect(&reflector, probe(0), from: SocketAddress(ip: Self.client.ip, port: 40001), at: 5).0 == .refusedRate)
        #expect(reflect(&reflector, probe(0), from: SocketAddress(ip: IPAddress("198.19.0.2")!, port: 1), at: 5).0 != .refusedRate)
        // 100 ms later, 10 more; the answer tells the refused from the lost (received 41, answered 33).
        var answered = 0
        var last: ProbeAnswer?
        for sequence in 40..<60 {
            let (decision, bytes) = reflect(&reflector, probe(UInt64(sequence)), at: 5 + Self.second / 10)
            if decision == .answer(length: 64) {
                answered += 1
                last = decodedAnswer(bytes)
            }
        }
        #expect(answered == 10)
        let answer = try #require(last)
        #expect(answer.reflectorReceived == 50 && answer.answerSequence == 41)
    }

    @Test func theDefaultBurstIsATenthOfASecondAndAtLeastAGeneratorsBurst() {
        #expect(Reflector(rate: 1000).burst == 100)
        #expect(Reflector(rate: 10).burst == 32)
        #expect(Reflector(rate: 1_000_000).burst == 100_000)
    }

    @Test func aFullSourceTableRefusesNewSourcesUntilAnEntryIsIdle() {
        var reflector = Reflector(rate: 100, burst: 10)
        for index in 0..<Reflector.maximumSources {
            let source = SocketAddress(ip: .v4(0xC613_0000 + UInt32(index)), port: 1)
            #expect(reflect(&reflector, probe(0), from: source, at: UInt64(index)).0 == .answer(length: 64))
        }
        let newcomer = SocketAddress(ip: IPAddress("198.18.9.9")!, port: 1)
        #expect(reflect(&reflector, probe(0), from: newcomer, at: Self.second / 2).0 == .refusedRate)
        // Known sources carry on meanwhile.
        #expect(
            reflect(&reflector, probe(1), from: SocketAddress(ip: .v4(0xC613_0005), port: 1), at: Self.second / 2).0 == .answer(length: 64))
        // Once the oldest has been idle long enough for its bucket to be full again, it makes room.
        #expect(reflect(&reflector, probe(0), from: newcomer, at: 2 * Self.second).0 == .answer(length: 64))
    }

    // MARK: Round-trip accounting

    func answer(
        _ sequence: UInt64, received: UInt64, answerSequence: UInt64, sentAt: UInt64 = 1_000_000, stream: UInt32 = 7,
        length: Int = 64
    ) -> [UInt8] {
        encoded(
            ProbeAnswer(
                streamID: stream, sequence: sequence, sendTimeNanoseconds: sentAt, reflectorReceived: received,
                answerSequence: answerSequence, length: length))
    }

    @Test func lossEachWayIsToldFromTheReflectorsCounts() throws {
        var rtt = RTTAccounting(streamID: 7, peer: Self.sink)
        #expect(rtt.totals.lossForward == nil && rtt.totals.lossBack == nil && rtt.totals.summary == nil)
        // Probes 0...9 sent; 2 and 6 lost on the way out (received 8); 8 refused by the rate limit
        // (answers 0...6); answers 3 and 4 lost on the way back; answer 1 arrives after 2.
        let arrivals: [(sequence: UInt64, received: UInt64, answer: UInt64)] = [
            (0, 1, 0), (3, 3, 2), (1, 2, 1), (7, 6, 5), (9, 8, 6)
        ]
        for (index, arrival) in arrivals.enumerated() {
            rtt.record(
                answer(arrival.sequence, received: arrival.received, answerSequence: arrival.answer).span, from: Self.sink,
                receivedAt: 1_000_000 + UInt64(index + 1) * 100_000)
        }
        let totals = rtt.totals
        #expect(totals.answers == 5)
        #expect(totals.lossForward == 2)
        #expect(totals.refused == 1)
        #expect(totals.lossBack == 2)
        #expect(totals.reordered == 1)
        let summary = try #require(totals.summary)
        // The histogram is exact to 255 µs and within 1 % above.
        #expect(summary.count == 5 && summary.minimum == 100 && (500...505).contains(summary.maximum))
        #expect(summary.minimum <= summary.p50 && summary.p50 <= summary.p99 && summary.p99 <= summary.maximum)
    }

    @Test func duplicatesStrangersOtherStreamsAndCorruptAnswersAreNotRoundTrips() {
        var rtt = RTTAccounting(streamID: 7, peer: Self.sink)
        let good = answer(0, received: 1, answerSequence: 0)
        rtt.record(good.span, from: Self.sink, receivedAt: 2_000_000)
        rtt.record(good.span, from: Self.sink, receivedAt: 3_000_000)
        rtt.record(good.span, from: SocketAddress(ip: Self.sink.ip, port: 8081), receivedAt: 2_000_000)
        rtt.record(good.span, from: SocketAddress(ip: IPAddress("198.18.2.3")!, port: 8080), receivedAt: 2_000_000)
        rtt.record(good.span, from: nil, receivedAt: 2_000_000)
        rtt.record(answer(1, received: 2, answerSequence: 1, stream: 8).span, from: Self.sink, receivedAt: 2_000_000)
        rtt.record(probe(1).span, from: Self.sink, receivedAt: 2_000_000)
        var damaged = answer(1, received: 2, answerSequence: 1)
        damaged[33] ^= 0x80
        rtt.record(damaged.span, from: Self.sink, receivedAt: 2_000_000)
        // Sent "after" it was received: the wall clock stepped back; counted, not recorded.
        rtt.record(answer(2, received: 3, answerSequence: 2, sentAt: 5_000_000).span, from: Self.sink, receivedAt: 2_000_000)
        let totals = rtt.totals
        #expect(totals.answers == 2 && totals.duplicates == 1)
        #expect(totals.ignored == 5 && totals.corrupt == 1 && totals.clockErrors == 1)
        #expect(totals.summary?.count == 1 && (1000...1010).contains(totals.summary?.maximum ?? 0))
        // The mapped form of the target's address is the target.
        var mapped = RTTAccounting(streamID: 7, peer: Self.sink)
        mapped.record(good.span, from: SocketAddress(ip: Self.sink.ip.mappedToIPv6, port: 8080), receivedAt: 2_000_000)
        #expect(mapped.totals.answers == 1)
    }

    /// The reflector and the sender's accounting together, over a path that loses probes and answers
    /// at random and reorders answers, with the rate limit refusing some: every figure the sender
    /// tells equals what happened up to the newest answer it received (after that it cannot tell).
    @Test func theSenderTellsWhatHappenedEachWay() throws {
        var generator = SeededGenerator()
        var reflector = Reflector(rate: 2000, burst: 32)
        var rtt = RTTAccounting(streamID: 7, peer: Self.sink)
        var lostForward: UInt64 = 0, refused: UInt64 = 0
        /// Per answer sequence: the losses and refusals so far when it was sent, and whether it arrived.
        var truth: [(lostForward: UInt64, refused: UInt64, arrived: Bool)] = []
        var inFlight: [[UInt8]] = []
        for sequence in UInt64(0)..<5000 {
            let now = sequence * 200_000  // 5000 probes a second against 2000 answers a second
            if Double.random(in: 0..<1, using: &generator) < 0.05 {
                lostForward += 1
                continue
            }
            let (decision, bytes) = reflect(&reflector, probe(sequence, sentAt: 1_000_000 + now), at: now)
            guard decision == .answer(length: 64) else {
                #expect(decision == .refusedRate)
                refused += 1
                continue
            }
            let arrives = Double.random(in: 0..<1, using: &generator) >= 0.05
            truth.append((lostForward, refused, arrives))
            guard arrives else { continue }
            inFlight.append(bytes)
            // Now and then an answer overtakes the one before it.
            if inFlight.count == 2, Double.random(in: 0..<1, using: &generator) < 0.1 { inFlight.swapAt(0, 1) }
            while inFlight.count > 1 {
                let bytes = inFlight.removeFirst()
                rtt.record(bytes.span, from: Self.sink, receivedAt: 1_000_000 + now + 300_000)
            }
        }
        for bytes in inFlight { rtt.record(bytes.span, from: Self.sink, receivedAt: 2_000_000_000) }
        let newest = try #require(truth.lastIndex { $0.arrived })
        let totals = rtt.totals
        let seed = "seed \(TestSeed.value)"
        #expect(totals.answers == UInt64(truth.filter(\.arrived).count), "\(seed)")
        #expect(totals.lossForward == truth[newest].lostForward, "\(seed)")
        #expect(totals.refused == truth[newest].refused, "\(seed)")
        #expect(totals.lossBack == UInt64(truth[..<newest].filter { !$0.arrived }.count), "\(seed)")
        #expect(refused > 0 && lostForward > 0 && totals.lossBack! > 0 && totals.reordered > 0, "\(seed)")
        #expect(totals.summary?.count == totals.answers)
    }

    // MARK: Reports

    @Test func theReportsCarryTheRoundTripsAndTheReflectorsCounts() throws {
        var rtt = RTTAccounting(streamID: 7, peer: Self.sink)
        rtt.record(answer(0, received: 1, answerSequence: 0).span, from: Self.sink, receivedAt: 1_250_000)
        let line = TunnelReport(role: "client", json: true).line(
            event: "final", elapsed: 1, interval: 1, now: TunnelSnapshot(), previous: TunnelSnapshot(), rtt: rtt.totals)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        for key in ["rtt_p50_us", "rtt_p90_us", "rtt_p99_us", "rtt_p999_us", "rtt_max_us", "rtt_min_us"] {
            #expect((object[key] as? NSNumber)?.intValue == 250, "\(key) in \(line)")
        }
        #expect((object["rtt_answers"] as? NSNumber)?.intValue == 1)
        #expect((object["rtt_loss_forward"] as? NSNumber)?.intValue == 0 && (object["rtt_loss_back"] as? NSNumber)?.intValue == 0)
        let empty = TunnelReport(role: "client", json: true).line(
            event: "final", elapsed: 1, interval: 1, now: TunnelSnapshot(), previous: TunnelSnapshot(),
            rtt: RTTAccounting(streamID: 7, peer: Self.sink).totals)
        #expect(empty.contains("\"rtt_p99_us\":null") && empty.contains("\"rtt_loss_back\":null"))
        let text = TunnelReport(role: "client", json: false).line(
            event: "report", elapsed: 1, interval: 1, now: TunnelSnapshot(), previous: TunnelSnapshot(), rtt: rtt.totals)
        #expect(text.contains("rtt p50/p90/p99/max 0.250/0.250/0.250/0.250 ms answers 1"), "\(text)")

        var counts = ReflectorCounts()
        counts.reflected = 5
        counts.refusedAllow = 2
        counts.refusedRate = 3
        counts.refusedAddress = 1
        let sinkLine = SinkReport(json: true).line(
            event: "final", elapsed: 1, interval: 1, now: SinkAccounting(), previous: nil, reflector: counts)
        for (key, value) in [("reflected", 5), ("reflect_refused_allow", 2), ("reflect_refused_rate", 3), ("reflect_refused_address", 1)] {
            #expect(sinkLine.contains("\"\(key)\":\(value)"), "\(sinkLine)")
        }
        #expect(
            !SinkReport(json: true).line(event: "final", elapsed: 1, interval: 1, now: SinkAccounting(), previous: nil).contains(
                "reflected"))
    }
}
