import TestSupport
import Testing
import WireFormat

@testable import Engine

@Suite struct ClientTableTests {
    static let a = SocketAddress(ip: .v4(0xC612_0101), port: 1000)
    static let b = SocketAddress(ip: .v4(0xC612_0101), port: 2000)
    static let second: UInt64 = 1_000_000_000

    @Test func learnsMovesAndFollowsTheKey() {
        let table = ClientTable(capacity: 2, idleAfter: 10 * Self.second)
        let (a, b) = (Self.a, Self.b), moved = 12 * Self.second
        #expect(table.learn(.v4(1), at: a, now: 1) == .changed)
        #expect(table.learn(.v4(1), at: a, now: 2) == .refreshed)
        #expect(table.learn(.v4(1), at: b, now: moved) == .changed)  // the client moved after an idle spell (NAT rebinding)
        #expect(table.learn(.v4(1), at: b, session: PeerSession(index: 2), now: moved) == .changed)  // or came back with another key
        #expect(table.withLookup { $0(.v4(1)) }?.session.index == 2, "replies follow the key")
        #expect(table.learn(.v4(1), at: b, localAddress: .v4(7), now: moved) == .changed)  // or sent to another relay address
        #expect(table.withLookup { $0(.v4(1)) }?.localAddress == .v4(7))
        #expect(table.endpoint(for: .v4(1)) == b)
        #expect(table.count == 1)
    }

    @Test func replacesTheLongestIdleButNeverAnActiveClient() {
        let second = Self.second
        let table = ClientTable(capacity: 2, idleAfter: 10 * second)
        table.learn(.v4(1), at: Self.a, now: 0)
        table.learn(.v4(2), at: Self.a, now: 1 * second)
        table.learn(.v4(1), at: Self.a, now: 2 * second)  // refreshed: .v4(2) is now the oldest
        #expect(table.addressesOldestFirst() == [.v4(2), .v4(1)])
        #expect(table.learn(.v4(3), at: Self.b, now: 5 * second) == .full, "both sent within 10 s")
        #expect(table.learn(.v4(3), at: Self.b, now: 11 * second) == .changed)
        #expect(table.endpoint(for: .v4(2)) == nil && table.endpoint(for: .v4(3)) == Self.b)
        #expect(table.endpoint(for: .v4(1)) == Self.a)
        #expect(table.count == 2 && table.evicted == 1)
    }

    /// Workers stamp their batches with their own clock reads, so an entry can be newer than the
    /// `now` of another worker's learn: it is fresh, not idle for 2^64 - 1 ns.
    @Test func anEntryRefreshedAfterNowIsFresh() {
        let second = Self.second
        let table = ClientTable(capacity: 1, idleAfter: 10 * second)
        #expect(table.learn(.v4(1), at: Self.a, now: 100 * second) == .changed)
        #expect(table.learn(.v4(2), at: Self.b, now: 99 * second) == .full, "the other worker's batch began a second earlier")
        #expect(table.endpoint(for: .v4(1)) == Self.a && table.evicted == 0)
    }

    /// Last writer does not win: an address refreshed within the idle window stays with its
    /// endpoint, whatever another endpoint sends; it moves only once idle.
    @Test func anAddressInUseStaysWithItsEndpoint() {
        let second = Self.second
        let table = ClientTable(capacity: 4, idleAfter: 10 * second)
        #expect(table.learn(.v4(1), at: Self.a, now: 1 * second) == .changed)
        #expect(table.learn(.v4(1), at: Self.b, now: 2 * second) == .inUse)
        #expect(
            table.learn(.v4(1), at: Self.b, session: PeerSession(index: 1), localAddress: .v4(7), now: 3 * second) == .inUse,
            "nor with another key or to another relay address")
        #expect(table.endpoint(for: .v4(1)) == Self.a)
        #expect(table.learn(.v4(1), at: Self.a, now: 5 * second) == .refreshed, "the owner keeps it fresh")
        #expect(table.learn(.v4(1), at: Self.b, now: 14 * second) == .inUse, "9 s after the owner's last packet")
        #expect(
            table.learn(.v4(1), at: Self.a, session: PeerSession(index: 1), now: 14 * second) == .changed,
            "its own endpoint may change key")
        #expect(table.learn(.v4(1), at: Self.b, now: 24 * second - 1) == .inUse)
        #expect(table.learn(.v4(1), at: Self.b, now: 24 * second) == .changed, "idle for 10 s: the binding moves")
        #expect(table.endpoint(for: .v4(1)) == Self.b)
        #expect(table.learn(.v4(1), at: Self.a, now: 25 * second) == .inUse, "and now stays there")
        // An entry stamped by a worker whose clock read came later is in use, not idle.
        #expect(table.learn(.v4(2), at: Self.a, now: 100 * second) == .changed)
        #expect(table.learn(.v4(2), at: Self.b, now: 99 * second) == .inUse)
        #expect(table.count == 2 && table.evicted == 0)
    }

    @Test func newAddressesSpendABudgetKnownOnesDoNot() {
        // No idle window: a known client may move at once (here, to show a move spends no token).
        let table = ClientTable(capacity: 100, newPerSecond: 10, newBurst: 3, idleAfter: 0)
        for address in 1...3 { #expect(table.learn(.v4(UInt32(address)), at: Self.a, now: 0) == .changed) }
        #expect(table.learn(.v4(4), at: Self.a, now: 0) == .rateLimited)
        #expect(table.learn(.v4(1), at: Self.b, now: 0) == .changed, "a known client may move")
        #expect(table.learn(.v4(2), at: Self.a, now: 0) == .refreshed)
        #expect(table.learn(.v4(4), at: Self.a, now: Self.second / 10) == .changed, "one token after 100 ms")
        #expect(table.count == 4)
    }

    @Test func forgetsASessionAndReusesItsSlots() {
        let table = ClientTable(capacity: 4)
        for address in 1...4 { table.learn(.v4(UInt32(address)), at: Self.a, session: PeerSession(index: address % 2), now: 0) }
        #expect(table.forget(session: PeerSession(index: 1)) == 2)
        #expect(table.count == 2 && table.endpoint(for: .v4(1)) == nil && table.endpoint(for: .v4(2)) == Self.a)
        #expect(table.learn(.v4(5), at: Self.b, now: 1) == .changed && table.learn(.v4(6), at: Self.b, now: 1) == .changed)
        #expect(table.count == 4 && Set(table.snapshot().keys) == [.v4(2), .v4(4), .v4(5), .v4(6)])
    }

    /// An Echo Request names no inner address: it refreshes the return paths through its sender's
    /// endpoint. Unauthenticated and spoofable, a flood of them must cost the entries of that
    /// endpoint, not a walk over every client, and leave the data plane's view as it was.
    @Test func anEchoFloodCostsTheEntriesOfItsEndpointOnly() {
        let clients = 65_536, second = Self.second
        let table = ClientTable(capacity: clients, newPerSecond: 1_000_000, newBurst: 1_000_000)
        func address(_ index: Int) -> IPAddress { .v4(0xC613_0000 + UInt32(index)) }
        /// 64 clients behind one gNB (198.18.1.1:2152), every other on an endpoint of its own.
        func endpoint(_ index: Int) -> SocketAddress {
            index < 64
                ? SocketAddress(ip: .v4(0xC612_0101), port: 2152)
                : SocketAddress(ip: .v4(0xC612_0200 + UInt32(index >> 16)), port: UInt16(index & 0xFFFF))
        }
        for index in 0..<clients { #expect(table.learn(address(index), at: endpoint(index), now: second) == .changed) }
        let stranger = SocketAddress(ip: .v4(0xC612_0909), port: 2152)
        for echo in 0..<10_000 {
            let from = echo % 3 == 0 ? stranger : echo % 3 == 1 ? endpoint(0) : endpoint(100 + echo)
            let expected = echo % 3 == 0 ? 0 : echo % 3 == 1 ? 64 : 1
            #expect(table.refresh(endpoint: from, now: 2 * second) == expected)
        }
        // Each refreshed entry is visited a bounded number of times per echo; none of the 65,536 others.
        let refreshed = UInt64(3_334 * 64 + 3_333 * 1)
        #expect(table.refreshVisits <= 2 * refreshed, "\(table.refreshVisits) entries visited for \(refreshed) refreshed")
        #expect(table.count == clients)
        var wrong = 0
        table.withLookup { lookup in
            for index in 0..<clients where lookup(address(index))?.endpoint != endpoint(index) { wrong += 1 }
        }
        #expect(wrong == 0)
        #expect(table.learn(address(70_000), at: stranger, now: 2 * second) == .full, "every client is active")
    }

    /// Random learns, evictions, forgets and endpoint refreshes against a plain model: the index
    /// (with its back-shifted deletions), the endpoint index and each endpoint's list, the refresh
    /// order and the free list must agree with it after every step. With an idle window, addresses
    /// in use stay with their endpoint and a full table evicts only idle entries.
    @Test(arguments: [UInt64(0), 40])
    func agreesWithAModelUnderChurn(idleAfter: UInt64) {
        var random = SeededGenerator()
        let capacity = 64
        let table = ClientTable(capacity: capacity, newPerSecond: 1_000_000, newBurst: 1_000_000, idleAfter: idleAfter)
        var model: [(address: IPAddress, port: UInt16, at: UInt64)] = []  // oldest first
        func endpoint(_ port: UInt16) -> SocketAddress { SocketAddress(ip: .v4(1), port: port) }
        for step in 0..<20_000 {
            let now = UInt64(step)
            // A small address space makes collisions, moves and refreshes common; IPv6 too.
            let raw = UInt32.random(in: 0..<200, using: &random)
            let address: IPAddress = raw % 3 == 0 ? .v6(0x2001_0db8 << 32, UInt64(raw)) : .v4(raw)
            let port = UInt16.random(in: 0..<4, using: &random)
            switch UInt32.random(in: 0..<50, using: &random) {
            case 0:
                let session = PeerSession(index: Int.random(in: 0..<2, using: &random))
                let forgotten = table.forget(session: session)
                let kept = model.filter { Int($0.port % 2) != session.index }
                #expect(forgotten == model.count - kept.count)
                model = kept
            case 1, 2:
                // An Echo Request from one endpoint (port 4 is nobody's).
                let from = UInt16.random(in: 0..<5, using: &random)
                let matching = model.filter { $0.port == from }.map { ($0.address, $0.port, now) }
                #expect(table.refresh(endpoint: endpoint(from), now: now) == matching.count, "step \(step)")
                model = model.filter { $0.port != from } + matching
            default:
                let result = table.learn(address, at: endpoint(port), session: PeerSession(index: Int(port % 2)), now: now)
                if let index = model.firstIndex(where: { $0.address == address }) {
                    if model[index].port != port, now - model[index].at < idleAfter {
                        #expect(result == .inUse, "step \(step)")
                        continue
                    }
                    #expect(result == (model[index].port == port ? .refreshed : .changed), "step \(step)")
                    model.remove(at: index)
                } else if model.count == capacity, let oldest = model.first, now - oldest.at < idleAfter {
                    #expect(result == .full, "step \(step)")
                    continue
                } else {
                    #expect(result == .changed, "step \(step)")
                    if model.count == capacity { model.removeFirst() }
                }
                model.append((address, port, now))
            }
            if step % 97 == 0 || step > 19_900 {
                #expect(table.addressesOldestFirst() == model.map(\.address), "step \(step)")
                for raw in 0..<200 {
                    let address: IPAddress = raw % 3 == 0 ? .v6(0x2001_0db8 << 32, UInt64(raw)) : .v4(UInt32(raw))
                    #expect(table.endpoint(for: address)?.port == model.first { $0.address == address }?.port)
                }
                let stamps = Dictionary(uniqueKeysWithValues: table.clients().map { ($0.address, $0.entry.refreshedAt) })
                #expect(stamps == Dictionary(uniqueKeysWithValues: model.map { ($0.address, $0.at) }), "step \(step)")
            }
        }
        #expect(table.count == model.count)
        // Refreshing each endpoint through the endpoint index finds exactly the model's entries.
        for port in UInt16(0)..<5 {
            #expect(table.refresh(endpoint: endpoint(port), now: 30_000) == model.filter { $0.port == port }.count)
        }
    }
}
