import Foundation
import KernelIO
import TestSupport
import Testing
import WireFormat
import WireGuard

extension EndToEnd {
    /// The WireGuard module against a real WireGuard: wireguard-go on a TUN device in B, the test in A
    /// speaking the protocol with nothing but the module and a UDPSocket. Pings cross wireguard-go's
    /// device, so B's kernel answers what we sealed and wireguard-go seals the answer for us to open.
    @Suite("WireGuard interoperability with wireguard-go", .serialized, .requiresRoot)
    struct WireGuardInteropTests {
        static let ourInner: UInt32 = 0xC613_0701  // 198.19.7.1, wireguard-go's allowed-ips for our peer
        static let theirInner: UInt32 = 0xC613_0702  // 198.19.7.2, on wireguard-go's device
        static let listenPort: UInt16 = 51820
        static let echoes = 100
        /// Every receive waits at most this long (a lost datagram fails the test, never hangs it).
        static let receiveTimeout = 5.0

        @Test("we initiate: handshake, then 100 echo requests sealed by us, answered through wireguard-go", arguments: [false, true])
        func weInitiate(presharedKey: Bool) throws {
            try Lab.with { lab in
                let peers = try Peers(presharedKey: presharedKey)
                let endpoint = try Endpoint(lab)
                let wireguard = try WireGuardGo(lab, peers: peers, ourEndpoint: nil)
                defer { wireguard.stop() }
                let them = SocketAddress(ip: IPAddress(Lab.addressB)!, port: Self.listenPort)

                var handshake = Handshake(identity: peers.ours, peer: peers.theirs.publicKey, presharedKey: peers.preshared)
                let initiation = try handshake.createInitiation(now: Clock.monotonicNanoseconds())
                try endpoint.socket.send(initiation.span, to: them)
                let response = try endpoint.receive { "no handshake response from wireguard-go: \(wireguard.logs)" }
                #expect(response.from == them)
                #expect(MessageType(of: response.bytes.span) == .response && response.bytes.count == MessageLength.response)
                try handshake.consumeResponse(response.bytes.span, identity: peers.ours)
                let derived = handshake.transportKeys()
                let keys = try #require(derived)
                #expect(keys.isInitiator)
                var sender = keys.sender, receiver = keys.receiver

                var generator = SeededGenerator(seed: peers.seed &+ 1)
                let identifier = UInt16.random(in: 1...UInt16.max, using: &generator)
                var lastCounter: UInt64?
                var keepalives = 0
                for sequence in 1...UInt16(Self.echoes) {
                    let payload = Lab.randomBytes(56, using: &generator)
                    let request = ICMPEcho.packet(
                        type: ICMPEcho.request, identifier: identifier, sequence: sequence, payload: payload,
                        from: Self.ourInner, to: Self.theirInner)
                    let sealed = try seal(request, &sender)
                    try endpoint.socket.send(sealed.span, to: them)
                    // The reply, past any keepalive wireguard-go sends first; bounded in datagrams.
                    var reply: [UInt8] = []
                    for _ in 0..<8 {
                        let datagram = try endpoint.receive { "no reply to echo \(sequence): \(wireguard.logs)" }
                        #expect(datagram.from == them)
                        let (packet, counter) = try open(datagram.bytes, &receiver)
                        #expect(lastCounter.map { counter > $0 } ?? true, "wireguard-go's counters increase")
                        lastCounter = counter
                        if packet.isEmpty {
                            keepalives += 1
                            continue
                        }
                        reply = packet
                        break
                    }
                    let echo = try #require(ICMPEcho(parsing: reply), "echo \(sequence): not an ICMP echo: \(reply)")
                    #expect(echo.type == ICMPEcho.reply && echo.source == Self.theirInner && echo.destination == Self.ourInner)
                    #expect(echo.identifier == identifier && echo.sequence == sequence)
                    #expect(echo.payload == payload, "echo \(sequence)'s payload (\(Lab.seedNote))")
                }
                #expect(sender.nextCounter == UInt64(Self.echoes))
                #expect(keepalives <= 1, "wireguard-go sent \(keepalives) keepalives")
                let datagramLength = 16 + 84 + TransportSender.trailerLength(forPacketLength: 84)
                try wireguard.checkPeer(
                    endpoint: endpoint.address, minimumBytes: Self.echoes * datagramLength, presharedKey: peers.preshared)
            }
        }

        @Test(
            "wireguard-go initiates: we answer its initiation, open its first transport message, answer its pings", arguments: [false, true]
        )
        func theyInitiate(presharedKey: Bool) throws {
            try Lab.ensureCommand("ping", package: "iputils-ping")
            try Lab.with { lab in
                let peers = try Peers(presharedKey: presharedKey)
                let endpoint = try Endpoint(lab)
                let wireguard = try WireGuardGo(lab, peers: peers, ourEndpoint: endpoint.address)
                defer { wireguard.stop() }
                let them = SocketAddress(ip: IPAddress(Lab.addressB)!, port: Self.listenPort)
                let pings = 3
                // Traffic for our peer makes wireguard-go initiate; the first ping waits in its queue meanwhile.
                let ping = try lab.spawn(
                    .b, ["ping", "-n", "-c", "\(pings)", "-i", "0.2", "-w", "15", Self.dotted(Self.ourInner)], name: "ping")

                let initiation = try endpoint.receive { "no initiation from wireguard-go: \(wireguard.logs)" }
                #expect(initiation.from == them)
                let message = try InitiationMessage(parsing: initiation.bytes.span)
                #expect(message.mac2 == [UInt8](repeating: 0, count: 16), "no cookie yet, so no MAC2")
                var damaged = initiation.bytes
                damaged[MessageLength.initiation - 20] ^= 1  // in MAC1
                var refusal: HandshakeError?
                do throws(HandshakeError) { _ = try peers.ours.openInitiation(damaged.span) } catch { refusal = error }
                #expect(refusal == .badMAC1, "a damaged MAC1 is refused before any DH")
                let opened = try peers.ours.openInitiation(initiation.bytes.span)
                #expect(opened.peer == peers.theirs.publicKey)
                #expect(opened.senderIndex == message.senderIndex)
                var handshake = Handshake(identity: peers.ours, peer: peers.theirs.publicKey, presharedKey: peers.preshared)
                try handshake.consumeInitiation(opened, now: Clock.monotonicNanoseconds())
                let response = try handshake.createResponse(now: Clock.monotonicNanoseconds())
                try endpoint.socket.send(response.span, to: initiation.from)
                let derived = handshake.transportKeys()
                let keys = try #require(derived)
                #expect(!keys.isInitiator && keys.remoteIndex == message.senderIndex)
                var sender = keys.sender, receiver = keys.receiver

                // Its first transport message confirms the session (a keepalive, or the queued ping);
                // we answer each echo request, and ping's exit status says whether wireguard-go opened them.
                var transportMessages = 0, answered = 0
                var sequences: [UInt16] = []
                for _ in 0..<(4 * pings) {
                    if answered == pings { break }
                    let datagram = try endpoint.receive {
                        "\(transportMessages) transport messages, \(answered) pings answered: \(wireguard.logs)"
                    }
                    #expect(datagram.from == them)
                    guard MessageType(of: datagram.bytes.span) == .transport else {
                        throw LabError("not a transport message: \(datagram.bytes)")
                    }
                    let (packet, _) = try open(datagram.bytes, &receiver)
                    transportMessages += 1
                    if packet.isEmpty { continue }
                    let echo = try #require(ICMPEcho(parsing: packet), "not an ICMP echo: \(packet)")
                    #expect(echo.type == ICMPEcho.request && echo.source == Self.theirInner && echo.destination == Self.ourInner)
                    sequences.append(echo.sequence)
                    let reply = ICMPEcho.packet(
                        type: ICMPEcho.reply, identifier: echo.identifier, sequence: echo.sequence, payload: echo.payload,
                        from: Self.ourInner, to: Self.theirInner)
                    let sealed = try seal(reply, &sender)
                    try endpoint.socket.send(sealed.span, to: them)
                    answered += 1
                }
                #expect(answered == pings && sequences == Array(1...UInt16(pings)), "echo requests seen: \(sequences)")
                #expect(ping.wait(timeout: 20) == 0, "ping through wireguard-go: \(ping.stdout)\(ping.stderr)")
                try wireguard.checkPeer(endpoint: endpoint.address, minimumBytes: pings * 32, presharedKey: peers.preshared)
            }
        }

        static func dotted(_ address: UInt32) -> String { "\(IPAddress.v4(address))" }

        /// Seals `packet` as one transport message.
        func seal(_ packet: [UInt8], _ sender: inout TransportSender) throws -> [UInt8] {
            let count = packet.count
            var buffer =
                [UInt8](repeating: 0, count: MessageLength.transportHeader) + packet
                + [UInt8](repeating: 0, count: TransportSender.trailerLength(forPacketLength: count))
            let datagram: Range<Int>
            do {
                var span = buffer.mutableSpan
                datagram = try sender.seal(&span, packet: MessageLength.transportHeader..<(MessageLength.transportHeader + count))
            }
            return Array(buffer[datagram])
        }

        /// Opens one transport message: the inner packet cut to its IPv4 total length (empty for a
        /// keepalive) and the message's counter.
        func open(_ datagram: [UInt8], _ receiver: inout TransportReceiver) throws -> ([UInt8], UInt64) {
            var buffer = datagram
            let count = buffer.count
            let opened: Result<(Range<Int>, UInt64), TransportError>
            do {
                var span = buffer.mutableSpan
                opened = receiver.open(&span, datagram: 0..<count)
            }
            let (plain, counter) = try opened.get()
            guard !plain.isEmpty else { return ([], counter) }
            let packet = Array(buffer[plain])
            try #require(packet.count >= 20 && packet[0] >> 4 == 4, "not IPv4: \(packet)")
            let length = Int(packet[2]) << 8 | Int(packet[3])
            try #require(length >= 20 && length <= packet.count && packet.count - length < 16, "padding: \(packet)")
            return (Array(packet[0..<length]), counter)
        }
    }
}

/// Our key pair, wireguard-go's and the preshared key, drawn from the run's seed.
private struct Peers {
    let seed = TestSeed.value
    let ours: StaticIdentity
    let theirs: StaticIdentity
    let preshared: PresharedKey

    init(presharedKey: Bool) throws {
        var generator = SeededGenerator(seed: seed)
        print("WireGuard interop: \(Lab.seedNote)")
        let ourKey = PrivateKey(bytes: Lab.randomBytes(32, using: &generator))
        let theirKey = PrivateKey(bytes: Lab.randomBytes(32, using: &generator))
        let psk = Lab.randomBytes(32, using: &generator)
        ours = StaticIdentity(privateKey: try #require(ourKey))
        theirs = StaticIdentity(privateKey: try #require(theirKey))
        preshared = presharedKey ? try #require(PresharedKey(bytes: psk)) : .none
    }

    var isPresharedKeySet: Bool { preshared.bytes.contains { $0 != 0 } }
}

/// The test's UDP socket, made in A (a socket stays in the namespace it was made in) on A's address.
private final class Endpoint {
    let socket: UDPSocket
    let address: SocketAddress
    private let batch = PacketBatch(slotCount: 1, slotSize: 2048)

    init(_ lab: Lab) throws {
        let bound = SocketAddress(ip: IPAddress(Lab.addressA)!, port: 0)
        socket = try Lab.inNamespace(lab.namespace(.a)) { try UDPSocket(for: bound, bind: true) }
        address = try #require(socket.localAddress)
    }

    /// The next datagram and its source; throws `missing()` when none comes within the timeout.
    func receive(
        timeout: Double = EndToEnd.WireGuardInteropTests.receiveTimeout, _ missing: () -> String
    ) throws -> Datagram {
        let count = try socket.receive(into: batch, waker: nil, timeoutMilliseconds: Int32(timeout * 1000))
        guard count > 0, let from = batch.peer(of: 0) else { throw LabError("nothing within \(timeout) s: \(missing())") }
        return Datagram(bytes: batch.withPacket(0) { span in (0..<span.count).map { span[$0] } }, from: from)
    }

    struct Datagram {
        var bytes: [UInt8]
        var from: SocketAddress
    }
}

/// wireguard-go in B on a device of its own, configured with `wg`: the anchors' build beside the
/// checkout where there is one (never copied into the project), else Debian's (UDPTUN_WIREGUARD_GO
/// picks another). Its UAPI socket is in /var/run/wireguard, outside any namespace: the device's
/// name is unique to the run, and the socket is removed once the process is stopped.
private final class WireGuardGo {
    let lab: Lab
    let name: String
    let process: Spawned
    let peers: Peers
    var socketPath: String { "/var/run/wireguard/\(name).sock" }

    static func binary() throws -> String {
        if let path = ProcessInfo.processInfo.environment["UDPTUN_WIREGUARD_GO"] { return path }
        let anchor = Lab.packageRoot.appendingPathComponent("../shared/anchors/wireguard-go").standardizedFileURL.path
        if FileManager.default.isExecutableFile(atPath: anchor) { return anchor }
        try Lab.ensureCommand("wireguard-go", package: "wireguard-go")
        return "wireguard-go"
    }

    init(_ lab: Lab, peers: Peers, ourEndpoint: SocketAddress?) throws {
        let binary = try Self.binary()
        try Lab.ensureCommand("wg", package: "wireguard-tools")
        self.lab = lab
        self.peers = peers
        // "wg" and the lab's pid and serial: unique to the run, within IFNAMSIZ.
        name = "wg" + lab.prefix.dropFirst(Lab.prefixStem.count)
        print("wireguard-go: \(binary) on \(name)")
        process = try lab.spawn(.b, [binary, "-f", name], name: "wireguard-go")
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: socketPath), process.isRunning, Date() < deadline { usleep(20_000) }
        guard FileManager.default.fileExists(atPath: socketPath) else {
            stop()
            throw LabError("wireguard-go made no \(socketPath): \(logs)")
        }
        do {
            let key = try lab.file("wireguard-go.key", Array(Data(peers.theirs.privateKey.bytes).base64EncodedString().utf8))
            var set = [
                "wg", "set", name, "private-key", key.path, "listen-port", "\(EndToEnd.WireGuardInteropTests.listenPort)",
                "peer", peers.ours.publicKey.base64, "allowed-ips",
                "\(EndToEnd.WireGuardInteropTests.dotted(EndToEnd.WireGuardInteropTests.ourInner))/32"
            ]
            if peers.isPresharedKeySet {
                let psk = try lab.file("wireguard-go.psk", Array(Data(peers.preshared.bytes).base64EncodedString().utf8))
                set += ["preshared-key", psk.path]
            }
            if let ourEndpoint { set += ["endpoint", "\(ourEndpoint)"] }
            try lab.runAll([
                (.b, set),
                (
                    .b,
                    [
                        "ip", "addr", "add", "\(EndToEnd.WireGuardInteropTests.dotted(EndToEnd.WireGuardInteropTests.theirInner))/24",
                        "dev", name
                    ]
                ),
                (.b, ["ip", "link", "set", name, "up"])
            ])
        } catch {
            stop()
            throw error
        }
    }

    var logs: String {
        "wireguard-go \(process.isRunning ? "running" : "exited \(process.process.terminationStatus)"): \(process.stderr)\(process.stdout)"
    }

    /// Stops wireguard-go (by its pid) and removes its UAPI socket if it left one.
    func stop() {
        process.stop()
        try? FileManager.default.removeItem(atPath: socketPath)
    }

    /// `wg show NAME dump`'s line for our peer: the endpoint it learnt, a handshake, bytes both ways.
    func checkPeer(endpoint: SocketAddress, minimumBytes: Int, presharedKey: PresharedKey) throws {
        let dump = lab.run(.b, ["wg", "show", name, "dump"], timeout: 10)
        try #require(dump.status == 0, "wg show: \(dump.stderr)")
        let line = try #require(
            dump.stdout.split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
                .first { $0.first == peers.ours.publicKey.base64 }, "no line for our peer in \(dump.stdout)")
        try #require(line.count >= 8, "\(line)")
        let psk = peers.isPresharedKeySet ? Data(presharedKey.bytes).base64EncodedString() : "(none)"
        #expect(line[1] == psk)
        #expect(line[2] == "\(endpoint)")
        #expect((Int(line[4]) ?? 0) > 0, "latest handshake: \(line)")
        #expect((Int(line[5]) ?? 0) >= minimumBytes, "received bytes: \(line)")
        #expect((Int(line[6]) ?? 0) >= minimumBytes, "sent bytes: \(line)")
    }
}

/// An IPv4 ICMP echo request or reply, built with both checksums and parsed with both checked.
private struct ICMPEcho {
    static let request: UInt8 = 8
    static let reply: UInt8 = 0
    var type: UInt8
    var identifier: UInt16
    var sequence: UInt16
    var payload: [UInt8]
    var source: UInt32
    var destination: UInt32

    static func packet(type: UInt8, identifier: UInt16, sequence: UInt16, payload: [UInt8], from: UInt32, to: UInt32) -> [UInt8] {
        var icmp: [UInt8] = [type, 0, 0, 0, 0, 0, 0, 0]
        PacketBuilder.put16(&icmp, 4, identifier)
        PacketBuilder.put16(&icmp, 6, sequence)
        icmp += payload
        PacketBuilder.put16(&icmp, 2, InternetChecksum.of(icmp.span))
        return PacketBuilder.ipv4(source: from, destination: to, proto: IPProtocolNumber.icmp, transport: icmp)
    }

    /// Nil unless `packet` is a whole IPv4 ICMP echo message with valid checksums.
    init?(parsing packet: [UInt8]) {
        guard packet.count >= 28, packet[0] >> 4 == 4, packet[9] == IPProtocolNumber.icmp else { return nil }
        let headerLength = Int(packet[0] & 0x0f) * 4
        guard headerLength >= 20, packet.count >= headerLength + 8,
            InternetChecksum.of(packet.span.extracting(0..<headerLength)) == 0
        else { return nil }
        let icmp = Array(packet[headerLength...])
        guard icmp.count % 2 == 0, InternetChecksum.of(icmp.span) == 0, icmp[1] == 0 else { return nil }
        func read16(_ bytes: [UInt8], _ at: Int) -> UInt16 { UInt16(bytes[at]) << 8 | UInt16(bytes[at + 1]) }
        func read32(_ bytes: [UInt8], _ at: Int) -> UInt32 { UInt32(read16(bytes, at)) << 16 | UInt32(read16(bytes, at + 2)) }
        type = icmp[0]
        identifier = read16(icmp, 4)
        sequence = read16(icmp, 6)
        payload = Array(icmp[8...])
        source = read32(packet, 12)
        destination = read32(packet, 16)
    }
}
