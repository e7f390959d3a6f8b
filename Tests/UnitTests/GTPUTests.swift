import KernelIO
import Testing

@testable import Engine
@testable import TestSupport
@testable import WireFormat

/// The GTP-U codec (TS 29.281) and its framing, against hand-built messages.
@Suite("GTP-U codec and framing")
struct GTPUTests {
    static let peer = SocketAddress(ip: IPAddress("198.18.1.1")!, port: 2152)
    let inner = PacketBuilder.probePacket(source: 0xC613_0001, destination: 0xC612_0202, destinationPort: 8080, sequence: 1, streamID: 3)

    /// A message: flags, type, TEID, then `rest` (optional block, extensions, content); Length set.
    static func message(flags: UInt8, type: UInt8 = GTPU.MessageType.gpdu, teid: UInt32 = 0x100, _ rest: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = [flags, type, 0, 0, 0, 0, 0, 0] + rest
        PacketBuilder.put16(&bytes, 2, UInt16(rest.count))
        PacketBuilder.put32(&bytes, 4, teid)
        return bytes
    }

    static func parse(_ bytes: [UInt8]) -> Result<GTPU.Header, GTPU.ParseFailure> { GTPU.parse(bytes.span, 0..<bytes.count) }

    @Test("every combination of E, S and PN: the optional block is there, the content follows it")
    func flagCombinations() throws {
        for flags in UInt8(0)...7 {
            let optional: [UInt8] = flags == 0 ? [] : [0x12, 0x34, 0x56, 0x00]  // sequence, N-PDU, no extension
            let bytes = Self.message(flags: GTPU.version1 | flags, optional + inner)
            let header = try Self.parse(bytes).get()
            #expect(header.content == (8 + optional.count)..<bytes.count, "flags \(flags)")
            #expect(header.sequence == (flags & GTPU.sequenceFlag != 0 ? 0x1234 : nil), "flags \(flags)")
            #expect(header.teid == 0x100 && header.type == GTPU.MessageType.gpdu)
        }
    }

    @Test("extension chains: UDP Port then PDU Session Container, unknown 0x01 skipped, unknown 0xC1 refused")
    func extensionChains() throws {
        let udpPort: [UInt8] = [1, 0x08, 0x68, GTPU.ExtensionType.pduSessionContainer]  // port 2152, next PSC
        let uplink: [UInt8] = [1, 0x10, 9, 0]  // UL, QFI 9, end
        let bytes = Self.message(
            flags: GTPU.version1 | GTPU.extensionFlag, [0, 0, 0, GTPU.ExtensionType.udpPort] + udpPort + uplink + inner)
        let header = try Self.parse(bytes).get()
        #expect(header.udpPort == 2152 && header.qfi == 9 && header.pduType == GTPU.PDUType.uplink)
        #expect(Array(bytes[header.content]) == inner)
        // Downlink with PPP: the paging policy indicator in the third octet (two units long).
        let downlink: [UInt8] = [2, 0x00, 0x80 | 5, 0x60, 0, 0, 0, 0]
        let dl = try Self.parse(Self.message(flags: 0x34, [0, 0, 0, 0x85] + downlink + inner)).get()
        #expect(dl.pduType == GTPU.PDUType.downlink && dl.qfi == 5 && dl.ppi == 3)
        // 0x01 (comprehension not required) is skipped; 0xC1 (required) is refused.
        let skippable = Self.message(flags: 0x34, [0, 0, 0, 0x01, 1, 0xaa, 0xbb, 0x85] + uplink + inner)
        #expect(try Array(skippable[Self.parse(skippable).get().content]) == inner)
        let required = Self.message(flags: 0x34, [0, 0, 0, 0xC1, 1, 0xaa, 0xbb, 0] + inner)
        #expect(Self.parse(required) == .failure(.unsupportedExtension(0xC1)))
        #expect(Self.parse(Self.message(flags: 0x34, [0, 0, 0, 0x81, 1, 0, 0, 0] + inner)) == .failure(.unsupportedExtension(0x81)))
        #expect(throws: Never.self) { try Self.parse(Self.message(flags: 0x34, [0, 0, 0, 0x41, 1, 0, 0, 0] + inner)).get() }
    }

    @Test("malformed headers of every kind are refused, never read past the datagram")
    func malformed() {
        let good = Self.message(flags: 0x34, [0, 0, 0, 0x85, 1, 0x10, 9, 0] + inner)
        var cases: [(String, [UInt8])] = [
            ("empty", []), ("shorter than the mandatory header", Array(good.prefix(7))),
            ("version 2", [0x54] + good.dropFirst()), ("PT 0 (GTP')", [0x24] + good.dropFirst()),
            ("length one short", Array(good.dropLast())), ("length one long", good + [0]),
            ("flags set but no optional block", Self.message(flags: 0x32, [0, 1])),
            ("extension length 0", Self.message(flags: 0x34, [0, 0, 0, 0x85, 0, 0x10, 9, 0])),
            ("extension past the end", Self.message(flags: 0x34, [0, 0, 0, 0x85, 3, 0x10, 9, 0])),
            ("chain running off the end", Self.message(flags: 0x34, [0, 0, 0, 0x85, 1, 0x10, 9, 0x40])),
            (
                "PDU session container too short",
                Self.message(flags: 0x34, [0, 0, 0, 0x85, 1, 0x10, 9, 0x85, 1, 0x10, 9, 0].dropLast(4) + [])
            )
        ]
        var lengthWrong = good
        lengthWrong[3] = 0xff
        cases.append(("Length field larger than the datagram", lengthWrong))
        for (name, bytes) in cases {
            if case .success = Self.parse(bytes) { Issue.record("accepted: \(name)") }
        }
        // Every truncation of a good message is refused (its Length no longer matches).
        for cut in 0..<good.count {
            if case .success = Self.parse(Array(good.prefix(cut))) { Issue.record("accepted a message cut at \(cut)") }
        }
    }

    @Test("G-PDU headers as written are what the parser reads, with and without a container")
    func gpduRoundTrip() throws {
        for container in [nil, (GTPU.PDUType.uplink, UInt8(9)), (GTPU.PDUType.downlink, UInt8(63))] as [(UInt8, UInt8)?] {
            let headerLength = GTPU.gpduHeaderLength(sessionContainer: container != nil)
            var bytes = [UInt8](repeating: 0, count: headerLength) + inner
            var span = bytes.mutableSpan
            GTPU.writeGPDUHeader(&span, at: 0, payloadLength: inner.count, teid: 0xdead_beef, sessionContainer: container)
            #expect(bytes[0] == (container == nil ? 0x30 : 0x34))
            let header = try Self.parse(bytes).get()
            #expect(header.teid == 0xdead_beef && Array(bytes[header.content]) == inner)
            #expect(header.qfi == container?.1 && header.pduType == container?.0)
        }
    }

    @Test("signalling messages: echo request and response, error indication, notification")
    func signalling() throws {
        func written(_ body: (inout MutableSpan<UInt8>) -> Int) -> [UInt8] {
            var buffer = [UInt8](repeating: 0, count: 64)
            var span = buffer.mutableSpan
            let length = body(&span)
            return Array(buffer.prefix(length))
        }
        #expect(written { GTPU.writeEchoResponse(&$0, sequence: 0x4242) } == [0x32, 2, 0, 6, 0, 0, 0, 0, 0x42, 0x42, 0, 0, 14, 0])
        let indication = written { GTPU.writeErrorIndication(&$0, teid: 0x1234_5678, localAddress: IPAddress("198.18.1.2")!) }
        #expect(indication == [0x32, 26, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0x12, 0x34, 0x56, 0x78, 133, 0, 4, 198, 18, 1, 2])
        let parsed = try Self.parse(indication).get()
        #expect(GTPU.errorIndicationTEID(indication.span, parsed.content) == 0x1234_5678)
        let v6 = written { GTPU.writeErrorIndication(&$0, teid: 1, localAddress: IPAddress("2001:db8::1")!) }
        #expect(v6.count == 36 && Array(v6[18...19]) == [0, 16])
        #expect(
            written { GTPU.writeSupportedExtensionHeadersNotification(&$0, sequence: 7) }
                == [0x32, 31, 0, 8, 0, 0, 0, 0, 0, 7, 0, 0, 141, 2, 0x40, 0x85])
        #expect(try Self.parse(written { GTPU.writeEchoRequest(&$0, sequence: 9) }).get().sequence == 9)
    }

    @Test("TEIDs and sessions parse as the command line writes them")
    func sessionsParse() {
        #expect(GTPUSession.teid("0x100") == 256 && GTPUSession.teid("4294967295") == .max)
        for bad in ["0", "0x0", "4294967296", "-1", "x", "0x"] { #expect(GTPUSession.teid(bad) == nil, "\(bad)") }
        #expect(
            GTPUSession("0x100=198.19.0.1/32")
                == GTPUSession(uplinkTEID: 256, downlinkTEID: 256, innerSources: [IPPrefix("198.19.0.1/32")!]))
        #expect(GTPUSession("1:2=198.19.0.0/24,2001:db8::/64")?.downlinkTEID == 2)
        for bad in ["0x100", "=198.19.0.1", "0=198.19.0.1", "1:2:3=198.19.0.1", "1=", "1=nope"] {
            #expect(GTPUSession(bad) == nil, "\(bad)")
        }
    }

    func open(_ opener: inout any PacketOpener, _ bytes: [UInt8], from peer: SocketAddress = peer) -> (OpenedDatagram, [UInt8]) {
        var datagram = bytes, reply = [UInt8](repeating: 0, count: 128)
        let count = datagram.count
        var span = datagram.mutableSpan, replySpan = reply.mutableSpan
        let opened = opener.open(&span, datagram: 0..<count, from: peer, reply: &replySpan)
        switch opened {
        case let .control(_, answer?), let .drop(_, answer?): return (opened, Array(reply.prefix(answer.length)))
        default: return (opened, [])
        }
    }

    @Test("the UPF forwards its sessions' G-PDUs, answers echoes, refuses unknown TEIDs with an Error Indication")
    func upfOpener() throws {
        let upf = GTPUFraming(
            role: .upf([GTPUSession("0x100:0x200=198.19.0.1/32")!, GTPUSession("0x101=198.19.0.2/32")!]),
            qfi: nil, localAddress: IPAddress("198.18.1.2")!)
        var opener = upf.makeOpener()
        let gpdu = Self.message(flags: 0x34, teid: 0x101, [0, 0, 0, 0x85, 1, 0x10, 7, 0] + inner)
        #expect(open(&opener, gpdu).0 == .forward(16..<gpdu.count, session: PeerSession(index: 1)))
        let echo = open(&opener, Self.message(flags: 0x32, type: GTPU.MessageType.echoRequest, teid: 0, [0, 5, 0, 0]))
        #expect(echo.0 == .control(.echoRequest, reply: ControlReply(.echoResponse, length: 14)))
        #expect(echo.1 == [0x32, 2, 0, 6, 0, 0, 0, 0, 0, 5, 0, 0, 14, 0])
        // Every unknown TEID is answered here (the engine's reply budget decides what is sent), but
        // never with more bytes than came in: an empty G-PDU draws nothing.
        for _ in 0..<20 {
            #expect(
                open(&opener, Self.message(flags: 0x30, teid: 0x999, inner)).0
                    == .drop(.unknownTEID, reply: ControlReply(.errorIndication, length: 24)))
        }
        #expect(open(&opener, Self.message(flags: 0x30, teid: 0x999, [])).0 == .drop(.unknownTEID, reply: nil))
        #expect(open(&opener, Self.message(flags: 0x30, type: GTPU.MessageType.endMarker, inner)).0 == .control(.endMarker, reply: nil))
        #expect(open(&opener, Self.message(flags: 0x30, type: 77, inner)).0 == .drop(.unexpectedMessage, reply: nil))
        let refused = open(&opener, Self.message(flags: 0x34, [0, 3, 0, 0xC1, 1, 0, 0, 0] + inner))
        #expect(refused.0 == .drop(.unsupportedExtension, reply: ControlReply(.extensionHeadersNotification, length: 16)))
        #expect(open(&opener, [0x30, 0xff]).0 == .drop(.badGTPHeader, reply: nil))
    }

    @Test("the UPF answers a session with its downlink TEID and, by default, the QFI of its latest uplink G-PDU")
    func upfSealer() throws {
        let upf = GTPUFraming(
            role: .upf([GTPUSession("0x100:0x200=198.19.0.1/32")!]), qfi: nil,
            localAddress: IPAddress("198.18.1.2")!)
        var sealer = upf.makeSealer(), opener = upf.makeOpener()
        func seal() throws -> GTPU.Header {
            var slot = [UInt8](repeating: 0, count: 16) + inner
            let count = slot.count
            var span = slot.mutableSpan
            let range = try #require(sealer.seal(&span, packet: 16..<count, session: PeerSession()))
            return try GTPU.parse(slot.span, range).get()
        }
        #expect(try seal().qfi == nil, "no uplink QFI seen yet: no container")
        #expect(try seal().teid == 0x200)
        _ = open(&opener, Self.message(flags: 0x34, teid: 0x100, [0, 0, 0, 0x85, 1, 0x10, 42, 0] + inner))
        let header = try seal()
        #expect(header.qfi == 42 && header.pduType == GTPU.PDUType.downlink)
    }

    @Test("a RAN client's G-PDUs carry the uplink TEID and the UL container; it accepts only its downlink TEID")
    func ranFraming() throws {
        let ran = GTPUFraming(role: .ran(uplinkTEID: 0x100, downlinkTEID: 0x200), qfi: 9, localAddress: IPAddress("198.18.1.1")!)
        #expect(ran.overhead == 16)
        var sealer = ran.makeSealer(), opener = ran.makeOpener()
        var slot = [UInt8](repeating: 0, count: 16) + inner
        let count = slot.count
        var span = slot.mutableSpan
        let range = try #require(sealer.seal(&span, packet: 16..<count, session: PeerSession()))
        #expect(range == 0..<count && slot[0] == 0x34)
        #expect(Array(slot[8..<16]) == [0, 0, 0, 0x85, 1, 0x10, 9, 0])
        #expect(open(&opener, Self.message(flags: 0x30, teid: 0x200, inner)).0 == .forward(8..<(8 + inner.count), session: PeerSession()))
        guard case .drop(.unknownTEID, _) = open(&opener, Self.message(flags: 0x30, teid: 0x100, inner)).0 else {
            Issue.record("its own uplink TEID is not a downlink session"); return
        }
        let plain = GTPUFraming(
            role: .ran(uplinkTEID: 1, downlinkTEID: 1), qfi: nil, sessionContainer: false,
            localAddress: IPAddress("198.18.1.1")!)
        #expect(plain.overhead == 8)
    }

    /// An Error Indication from `peer` naming `teid`, as a peer writes it.
    static func errorIndication(naming teid: UInt32) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 64)
        var span = buffer.mutableSpan
        let length = GTPU.writeErrorIndication(&span, teid: teid, localAddress: IPAddress("198.18.1.1")!)
        return Array(buffer.prefix(length))
    }

    @Test("an Error Indication is acted on only from the endpoint the session uses, and 64+ junk ones never latch it off")
    func errorIndicationFromTheSessionsEndpointOnly() throws {
        let upf = GTPUFraming(role: .upf([GTPUSession("0x100:0x200=198.19.0.1/32")!]), qfi: nil, localAddress: IPAddress("198.18.1.2")!)
        var opener = upf.makeOpener()
        let clients = ClientTable(capacity: 16)
        let inner = IPAddress("198.19.0.1")!
        clients.learn(inner, at: Self.peer, now: 1)
        let warnings = Locked<[String]>([])
        let log = EngineLog(info: { _ in }, warning: { line in warnings.withLock { $0.append(line) } })
        let socket = try UDPSocket(for: SocketAddress(ip: .v4(0x7F00_0001), port: 0), bind: true)
        let tasks = GTPUEcho.relayTasks(upf, interval: 0, socket: socket, counters: TunnelCounters(), clients: clients, log: log)
        let watch = try #require(tasks.first { $0.name == "gtp-u path report" })
        // Another endpoint (same address, another port; then another address) names the downlink TEID.
        for spoofer in [SocketAddress(ip: Self.peer.ip, port: 40000), SocketAddress(ip: IPAddress("198.18.1.66")!, port: 2152)] {
            #expect(open(&opener, Self.errorIndication(naming: 0x200), from: spoofer).0 == .control(.errorIndication, reply: nil))
        }
        watch.run()
        #expect(clients.endpoint(for: inner) == Self.peer, "a spoofed Error Indication leaves the return path in place")
        #expect(warnings.withLock { $0 }.isEmpty, "\(warnings.withLock { $0 })")
        // A hundred junk TEIDs from anywhere, then the session's own endpoint names its TEID.
        for junk in UInt32(1)...100 {
            _ = open(&opener, Self.errorIndication(naming: 0x10_000 + junk), from: SocketAddress(ip: .v4(0xC612_0100 + junk), port: 2152))
        }
        watch.run()
        #expect(clients.endpoint(for: inner) == Self.peer, "junk TEIDs touch no session")
        _ = open(&opener, Self.errorIndication(naming: 0x200), from: Self.peer)
        watch.run()
        #expect(clients.endpoint(for: inner) == nil, "the genuine Error Indication is acted on: the return path is forgotten")
        #expect(
            warnings.withLock { $0 }.contains { $0.contains("gtp-u session rejected") && $0.contains("0x200") },
            "\(warnings.withLock { $0 })")
        // Learned again, and rejected again: nothing latched.
        clients.learn(inner, at: Self.peer, now: 2)
        _ = open(&opener, Self.errorIndication(naming: 0x200), from: Self.peer)
        watch.run()
        #expect(clients.endpoint(for: inner) == nil, "a second genuine Error Indication is acted on too")
        #expect(upf.monitor.summary.rejectedTEIDs == 1)
    }

    @Test("a RAN node acts on Error Indications from its UPF only")
    func ranErrorIndicationFromItsRelayOnly() throws {
        let relay = SocketAddress(ip: IPAddress("198.18.1.2")!, port: 2152)
        let ran = GTPUFraming(
            role: .ran(uplinkTEID: 0x100, downlinkTEID: 0x200), qfi: 9, localAddress: IPAddress("198.18.1.1")!,
            peer: relay.ip)
        var opener = ran.makeOpener()
        let socket = try UDPSocket(for: SocketAddress(ip: .v4(0x7F00_0001), port: 0), bind: true)
        let watch = try #require(
            GTPUEcho.tasks(
                interval: 0, socket: socket, monitor: ran.monitor, counters: TunnelCounters(),
                peers: { [relay] }, log: .silent
            ).first)
        _ = open(&opener, Self.errorIndication(naming: 0x100), from: SocketAddress(ip: IPAddress("198.18.1.66")!, port: 2152))
        watch.run()
        #expect(ran.monitor.summary.rejectedTEIDs == 0, "not from its UPF")
        _ = open(&opener, Self.errorIndication(naming: 0x100), from: relay)
        watch.run()
        #expect(ran.monitor.summary.rejectedTEIDs == 1)
    }

    @Test("echo bookkeeping: three unanswered requests take a path down, a response brings it up with a round trip")
    func pathMonitor() {
        let monitor = GTPUPathMonitor()
        var events: [Bool] = []
        for second in 0..<4 { events.append(monitor.sending(to: Self.peer, at: UInt64(second) * 1_000_000_000).wentDown) }
        #expect(events == [false, false, false, true])
        #expect(monitor.paths[Self.peer]?.isDown == true)
        let (sequence, _) = monitor.sending(to: Self.peer, at: 10_000_000_000)
        #expect(monitor.responded(from: Self.peer, sequence: sequence, at: 10_000_250_000), "it came back")
        #expect(monitor.paths[Self.peer]?.roundTrip == 250_000 && monitor.paths[Self.peer]?.isDown == false)
        #expect(monitor.paths[Self.peer]?.downEvents == 1)
    }
}
