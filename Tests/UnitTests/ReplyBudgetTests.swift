import Synchronization
import Testing

@testable import Engine
@testable import KernelIO
@testable import TestSupport
@testable import WireFormat

/// Replies to datagrams nobody authenticated (GTP-U Echo Responses, Error Indications,
/// Notifications) are budgeted per source and in total, so the relay cannot be made a reflector.
@Suite("Reply budget")
struct ReplyBudgetTests {
    static let upf = GTPUFraming(role: .upf([GTPUSession("0x100=198.19.0.1/32")!]), qfi: nil, localAddress: IPAddress("198.18.1.2")!)

    /// A 12-byte GTP-U Echo Request with sequence number `sequence`.
    static func echoRequest(_ sequence: UInt16) -> [UInt8] {
        [
            GTPU.version1 | GTPU.sequenceFlag, GTPU.MessageType.echoRequest, 0, 4, 0, 0, 0, 0, UInt8(sequence >> 8), UInt8(sequence & 0xff),
            0, 0
        ]
    }

    static func source(_ index: Int) -> SocketAddress { SocketAddress(ip: .v4(0xC612_0000 + UInt32(index)), port: 2152) }

    /// Time that moves only when the test says (nanoseconds).
    final class FakeClock: Sendable {
        private let value = Atomic<UInt64>(1_000_000_000)
        var now: UInt64 { value.load(ordering: .relaxed) }
        func advance(_ nanoseconds: UInt64) { value.add(nanoseconds, ordering: .relaxed) }
        var read: @Sendable () -> UInt64 { { [self] in now } }
    }

    @Test("100,000 spoofed Echo Requests from 10,000 sources draw no more replies than the total budget allows (real clock)")
    func spoofedEchoFloodRealClock() throws {
        let device = FakeTunQueue(), socket = FakeDatagramSocket(), counters = TunnelCounters(), lifecycle = try Lifecycle()
        var stage = InboundStage(socket: socket, tunQueues: [device], framing: Self.upf, policy: InboundPolicy(), counters: counters)
        let start = Clock.monotonicNanoseconds()
        for round in 0..<10 {
            for index in 0..<10_000 { socket.deliver(Self.echoRequest(UInt16(round)), from: Self.source(index)) }
            _ = EngineTests.drain(&stage, lifecycle)
        }
        let elapsed = Double(Clock.monotonicNanoseconds() - start) / 1e9
        let replies = socket.sent.count
        // The default total: 1,000 a second after a burst as large, however long the run took.
        #expect(Double(replies) <= 1000 + 1000 * elapsed + 1, "\(replies) replies in \(elapsed) s")
        #expect(counters.snapshot().controlReceived[ControlMessage.echoRequest.rawValue] == 100_000)
        #expect(counters.snapshot()[.repliesLimited] == UInt64(100_000 - replies))
    }

    @Test(
        "100,000 spoofed Echo Requests from 10,000 sources over 4 s, on two workers: the total budget holds across them, every refusal counted"
    )
    func spoofedEchoFloodTwoWorkers() throws {
        let clock = FakeClock()
        let budget = ReplyBudget(perSecond: 1000, clock: clock.read)
        let lifecycle = try Lifecycle()
        let workers = (0..<2).map { _ in (socket: FakeDatagramSocket(), counters: TunnelCounters()) }
        var stages = workers.map {
            InboundStage(
                socket: $0.socket, tunQueues: [FakeTunQueue()], framing: Self.upf, policy: InboundPolicy(), counters: $0.counters,
                replyBudget: budget)
        }
        // 25 rounds of 4,000 datagrams, 160 ms apart: every source sends 10 in 4 s, each worker sees half of them.
        for round in 0..<25 {
            for index in 0..<4000 {
                let source = (round * 4000 + index) % 10_000
                workers[source % 2].socket.deliver(Self.echoRequest(UInt16(round)), from: Self.source(source))
            }
            for worker in stages.indices { _ = EngineTests.drain(&stages[worker], lifecycle) }
            clock.advance(160_000_000)
        }
        let replies = workers.reduce(0) { $0 + $1.socket.sent.count }
        let refused = workers.reduce(UInt64(0)) { $0 + $1.counters.snapshot()[.repliesLimited] }
        #expect(replies <= 1000 + 1000 * 4, "the burst and 4 s at 1,000 a second: \(replies)")
        #expect(replies >= 4000, "the budget is spent, not refused outright: \(replies)")
        #expect(refused == UInt64(100_000 - replies))
        #expect(workers.allSatisfy { $0.socket.sent.allSatisfy { $0.bytes.count == 14 } }, "Echo Responses, 14 bytes each")
    }

    @Test("one source gets a few replies a second, however fast it asks; another source is not held back by it")
    func perSource() throws {
        let clock = FakeClock()
        let budget = ReplyBudget(perSecond: 1000, clock: clock.read)
        var gate = budget.makeGate()
        let flooder = Self.source(1).ip, other = Self.source(2).ip
        var allowed = 0
        for _ in 0..<10_000 {
            if gate.allow(to: flooder) { allowed += 1 }
            clock.advance(100_000)  // 10,000 a second
        }
        #expect(allowed <= Int(ReplyBudget.perSourcePerSecond) * 2, "the burst and one second's refill: \(allowed)")
        #expect(allowed >= Int(ReplyBudget.perSourcePerSecond))
        let otherAllowed = gate.allow(to: other)
        #expect(otherAllowed)
    }

    @Test("the per-source table is bounded: a flood of new sources replaces stale ones, known busy sources stay limited")
    func boundedSources() throws {
        let clock = FakeClock()
        var gate = ReplyBudget(perSecond: 1_000_000, clock: clock.read).makeGate()
        let victim = IPAddress("198.18.9.9")!
        var victimReplies = 0
        for index in 0..<100_000 {
            _ = gate.allow(to: Self.source(index).ip)
            if index % 100 == 0, gate.allow(to: victim) { victimReplies += 1 }
            clock.advance(10_000)  // 100,000 a second: the run is one second
        }
        // The victim asked 1,000 times in one second; its slot is the freshest of its line most of
        // the time, so it gets its burst and refill, plus a fresh burst whenever four newer sources
        // in its line pushed it out (rare: one in 1,024 lines per new source).
        #expect(victimReplies < 100, "\(victimReplies)")
    }

    @Test("--reply-rate 0 sends no reply at all")
    func none() {
        var gate = ReplyBudget(perSecond: 0, clock: FakeClock().read).makeGate()
        let allowed = gate.allow(to: Self.source(1).ip)
        #expect(!allowed)
    }
}
