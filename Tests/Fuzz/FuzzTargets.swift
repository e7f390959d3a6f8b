import Engine
import Glibc
// libFuzzer entry point for udptun's decoders. Built by Tests/Fuzz/run.sh with
// `-sanitize=fuzzer,address -parse-as-library -D FUZZING` (libFuzzer then supplies `main`). In an
// ordinary build it is `udptun-fuzz seeds DIR`, which writes the seed corpus from the project's own
// packet builders. UDPTUN_FUZZ_TARGET picks what the bytes feed:
//
//   ip        IPPacket.validate (every inner packet the relay or client receives), FlowSteering, and
//             the relay's ICMP "too big" about any valid packet (itself a valid packet)
//   probe     ProbePayload.decode and the sink's accounting; the reflector and ProbeAnswer.decode
//   gso       virtio-net header + super-packet → GSOSegmenter
//   coalesce  a run of packets → SegmentCoalescer (TCP and UDP) → GSOSegmenter on the result
//   open      authenticated and raw framing (AuthenticatedFraming.Opener, replay windows)
//   address   address, prefix, host:port and --allowed-ips parsing
//   gtpu      GTP-U header parsing and the extension walk, and the UPF's and RAN's openers
//   http      the metrics endpoint's request handling (what any client of the port may send)
//   wg-initiation  a WireGuard responder: MAC1/MAC2 checks, openInitiation, consumeInitiation
//   wg-response    a WireGuard initiator: consumeResponse and cookie replies; a session's transport opener
//   wg-config      a `wg setconf` configuration file (WireGuardConfiguration(parsing:)) and its showconf text
//   wg-uapi        a UAPI set=1 body applied to a device; its get=1 answer and set=1 request read back
import KernelIO
import Measurement
import Monitoring
import TestSupport
import WireFormat

let target = getenv("UDPTUN_FUZZ_TARGET").map { String(cString: $0) } ?? "ip"
let key = TunnelKey(base64: "4bSnGPpLdMwaTD4gZ/K7VF3eNTGhwavHxA7aWTVMwK8=")!
let secondKey = TunnelKey(base64: "WBtbZczXQonyHVUGzMkgWqP1q4ejJ0j++tEK/KHl4Fw=")!
// Two keys, as a relay with --client-key holds; a new-sender budget no fuzzer can spend, so made-up
// sender ids keep reaching the key setup and the cipher.
nonisolated(unsafe) var opener = AuthenticatedFraming.Opener(
    keys: [key, secondKey],
    newSenders: TokenBucket(rate: 1_000_000_000, burst: 1_000_000))
/// Reused across inputs: allocating 128 KiB per input under ASan made the gso target crawl.
nonisolated(unsafe) var segmentBuffer = [UInt8](repeating: 0, count: 2 * 65536)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    switch target {
    case "ip": fuzzValidation(input)
    case "probe":
        fuzzProbe(input)
        fuzzReflection(input)
    case "gso": fuzzSegmentation(input)
    case "coalesce": fuzzCoalescing(input)
    case "open": fuzzOpening(input)
    case "address": fuzzAddresses(input)
    case "gtpu": fuzzGTPU(input)
    case "http": fuzzHTTP(input)
    case "wg-initiation": fuzzWireGuardInitiation(input)
    case "wg-response": fuzzWireGuardResponse(input)
    case "wg-config": fuzzWireGuardConfig(input)
    case "wg-uapi": fuzzWireGuardUAPI(input)
    default: fatalError("unknown UDPTUN_FUZZ_TARGET \(target)")
    }
    return 0
}

func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("invariant broken: \(message())") }
}

func fuzzHTTP(_ input: [UInt8]) {
    _ = MetricsHTTP.isComplete(input)
    let body = Array("udptun_build_info 1\n".utf8)
    let response = MetricsHTTP.response(to: input) { body }
    // Always a whole answer: a status line with a known status, headers, a Content-Length that
    // matches what follows (nothing after headers for HEAD).
    let text = String(decoding: response, as: UTF8.self)
    check(["200", "400", "404", "405"].contains { text.hasPrefix("HTTP/1.1 \($0) ") }, "status line: \(text.prefix(40))")
    let separator = Array("\r\n\r\n".utf8)
    guard let end = (0...(response.count - separator.count)).first(where: { response[$0..<($0 + 4)].elementsEqual(separator) }) else {
        return check(false, "no end of headers")
    }
    let payload = response.count - end - separator.count
    let headers = String(decoding: response[..<end], as: UTF8.self)
    guard let lengthLine = headers.split(separator: "\r\n").first(where: { $0.hasPrefix("Content-Length: ") }),
        let length = Int(lengthLine.dropFirst("Content-Length: ".count))
    else { return check(false, "no Content-Length") }
    check(payload == length || (payload == 0 && input.starts(with: Array("HEAD ".utf8))), "Content-Length \(length), body \(payload)")
}

func fuzzValidation(_ input: [UInt8]) {
    // A keepalive is never a packet to forward.
    if KeepalivePacket.source(of: input.span) != nil {
        check(input.count == 20 || input.count == 40, "keepalive length \(input.count)")
        check(!IPPacket.validate(input.span).isSuccess, "a keepalive validated as a packet")
    }
    // The TUN queue a packet is written through: any bytes, any queue count, always in range.
    for queues in [1, 2, 3, 64] {
        let queue = FlowSteering.queue(for: input.span, queues: queues)
        check((0..<queues).contains(queue), "queue \(queue) of \(queues)")
    }
    guard case let .success(info) = IPPacket.validate(input.span) else { return }
    check(info.totalLength == input.count, "length")
    check(info.headerLength <= info.totalLength, "header length")
    check(!info.source.isInvalidSource, "source")
    // The ICMP error the relay would send about it is itself a valid packet, within the minimum MTU.
    guard PacketTooBig.warrantsReport(input.span, info: info) else { return }
    var buffer = [UInt8](repeating: 0, count: 1400)
    var span = buffer.mutableSpan
    let source: IPAddress = info.version == 4 ? .v4(0xC612_0102) : .v6(0x2001_0db8_0000_0002, 1)
    guard let range = PacketTooBig.write(into: &span, at: 20, about: input.span, info: info, mtu: 1280, from: source) else {
        check(false, "no room for the ICMP error")
        return
    }
    check(range.count <= (info.version == 4 ? 576 : 1280), "ICMP error length \(range.count)")
    guard case let .success(error) = IPPacket.validate(buffer.span.extracting(range)) else {
        check(false, "the ICMP error does not validate")
        return
    }
    check(error.destination == info.source && error.source == source, "ICMP error addresses")
}

func fuzzProbe(_ input: [UInt8]) {
    // Trusting every clock, so the latency histograms and jitter see every decoded payload.
    var accounting = SinkAccounting(synchronisedClocks: true)
    accounting.record(input.span, from: SocketAddress(ip: .v4(1), port: 1), receivedAt: 0)
    accounting.record(input.span, from: nil, receivedAt: UInt64.max)
    let totals = accounting.totals
    check(totals.datagrams == 2, "datagrams")
    check(totals.received + totals.duplicates + totals.corrupt + totals.unsequenced == 2, "every datagram counted once")
    check(
        accounting.latency.count + accounting.latencyNegative + accounting.latencyWithheld == totals.received,
        "every unique payload's latency recorded or counted out")
}

/// The reflector answers valid probes only, with an answer that decodes to the probe's echo; the
/// sender's round-trip accounting counts any bytes exactly once.
func fuzzReflection(_ input: [UInt8]) {
    var reflector = Reflector()
    var answer = [UInt8](repeating: 0, count: ProbeAnswer.length(answering: input.count))
    var span = answer.mutableSpan
    let decision = reflector.reflect(input.span, from: SocketAddress(ip: .v4(0xC613_0001), port: 1), now: 0, into: &span)
    if case let .answer(length) = decision {
        guard case let .probe(probe) = ProbePayload.decode(input.span),
            case let .answer(echo) = ProbeAnswer.decode(answer.span.extracting(0..<length))
        else {
            check(false, "answered a non-probe, or the answer does not decode")
            return
        }
        check(echo.streamID == probe.streamID && echo.sequence == probe.sequence, "echo")
        check(echo.sendTimeNanoseconds == probe.sendTimeNanoseconds && echo.reflectorReceived == 1, "echo")
    } else {
        check(decision == .notProbe, "a probe from an ordinary source refused")
    }
    let peer = SocketAddress(ip: .v4(1), port: 1)
    var rtt = RTTAccounting(streamID: 1, peer: peer)
    rtt.record(input.span, from: peer, receivedAt: 0)
    rtt.record(input.span, from: peer, receivedAt: .max)
    let totals = rtt.totals
    check(totals.answers + totals.duplicates + totals.corrupt + totals.ignored == 2, "every answer counted once")
}

func fuzzSegmentation(_ input: [UInt8]) {
    guard input.count >= VirtioNetHeader.length, let header = VirtioNetHeader(input.span) else { return }
    let packet = Array(input[VirtioNetHeader.length...])
    let capacity = segmentBuffer.count
    var span = segmentBuffer.mutableSpan
    guard case let .success(layout) = GSOSegmenter.segment(packet.span, header: header, into: &span, headroom: 20, overhead: 36)
    else { return }
    check(layout.count >= 1 && layout.lastLength <= layout.segmentLength, "layout")
    check(layout.stride * (layout.count - 1) + 20 + layout.lastLength <= capacity, "bounds")
}

/// The TUN layer's own writer, writing into in-memory queues: every coalesced group is cut apart
/// again, as the kernel will.
func segmentCount(_ frame: FakeTunQueue.Frame) -> Int {
    guard frame.header.isGSO else { return 1 }
    let capacity = segmentBuffer.count
    var span = segmentBuffer.mutableSpan
    guard case let .success(layout) = GSOSegmenter.segment(frame.packet.span, header: frame.header, into: &span) else {
        fatalError("a coalesced group does not segment")
    }
    check(layout.stride * (layout.count - 1) + layout.lastLength <= capacity, "bounds")
    return layout.count
}

/// Input: a sequence of [length u16][bytes] records, each a candidate packet.
func fuzzCoalescing(_ input: [UInt8]) {
    var packets: [[UInt8]] = []
    var offset = 0
    while offset + 2 <= input.count, packets.count < 128 {
        let length = Int(input[offset]) << 8 | Int(input[offset + 1])
        offset += 2
        let end = min(input.count, offset + length)
        packets.append(Array(input[offset..<end]))
        offset = end
    }
    let device = FakeTunQueue(virtioHeaders: true, udpSegmentation: input.first.map { $0 & 1 == 1 } ?? false)
    // Only packets whose transport checksum is right are coalesced: with bit 1 of the first byte
    // set, every TCP and UDP checksum is made right first, so mutated inputs still reach the merging.
    let fixChecksums = input.first.map { $0 & 2 == 2 } ?? false
    for index in packets.indices where fixChecksums {
        let packet = packets[index]
        guard case let .success(info) = IPPacket.validate(packet.span), !info.isFragment,
            info.transportProtocol == IPProtocolNumber.tcp || info.transportProtocol == IPProtocolNumber.udp
        else { continue }
        let offset = info.transportProtocol == IPProtocolNumber.tcp ? 16 : 6
        guard info.headerLength + offset + 2 <= packet.count else { continue }
        var fixed = packet
        var span = fixed.mutableSpan
        TransportChecksum.complete(
            &span, packet: 0..<packet.count, version: info.version, proto: info.transportProtocol,
            start: info.headerLength, offset: offset)
        packets[index] = fixed
    }
    var writer = TunWriter(queues: [device])
    var valid = 0
    for packet in packets {
        guard case let .success(info) = IPPacket.validate(packet.span) else { continue }
        valid += 1
        try? writer.write(packet.span, info: info)
    }
    try? writer.flush()
    let written = writer.takeCounts().written
    let emitted = device.written.reduce(0) { $0 + segmentCount($1) }
    check(written == valid, "every valid packet written exactly once (\(written) of \(valid))")
    check(emitted == valid, "groups segment back into every packet (\(emitted) of \(valid))")
}

func fuzzOpening(_ input: [UInt8]) {
    var datagram = input
    let count = datagram.count
    var span = datagram.mutableSpan
    if case let .success((range, keyIndex)) = opener.open(&span, datagram: 0..<count) {
        check(range.lowerBound == 20 && range.upperBound == count - 16, "inner range")
        check((0..<2).contains(keyIndex), "the key that opened it is one of the two")
    }
    var raw = RawFraming().makeOpener()
    var reply = [UInt8](repeating: 0, count: 64)
    var replySpan = reply.mutableSpan
    _ = raw.open(&span, datagram: 0..<count, from: SocketAddress(ip: .v4(1), port: 1), reply: &replySpan)
}

func fuzzAddresses(_ input: [UInt8]) {
    let text = String(decoding: input, as: UTF8.self)
    if let address = IPAddress(text) {
        check(IPAddress(address.description) == address, "address round trip \(text)")
    }
    if let prefix = IPPrefix(text) {
        check(prefix.contains(prefix.address), "prefix contains its address")
        check(IPPrefix(prefix.description) == prefix, "prefix round trip")
    }
    _ = try? AddressResolver.split(text, defaultPort: 8080)
    _ = PacketPolicy.ClientRule(text)
}

/// The UPF's opener (two sessions; its Error Indication budget refills only once a second, so most
/// unknown TEIDs take the silent path too) and the RAN's.
nonisolated(unsafe) var gtpuOpeners: [any PacketOpener] = [
    GTPUFraming(
        role: .upf([GTPUSession("0x100:0x200=198.19.0.1/32")!, GTPUSession("7=2001:db8::/64")!]), qfi: nil,
        localAddress: IPAddress("198.18.1.2")!
    ).makeOpener(),
    GTPUFraming(role: .ran(uplinkTEID: 0x100, downlinkTEID: 0x200), qfi: 9, localAddress: IPAddress("2001:db8::1")!).makeOpener()
]
nonisolated(unsafe) var replyBuffer = [UInt8](repeating: 0, count: 2048)

func fuzzGTPU(_ input: [UInt8]) {
    let parsed = GTPU.parse(input.span, 0..<input.count)
    if case let .success(header) = parsed {
        check(header.content.lowerBound >= 8 && header.content.upperBound == input.count, "content \(header.content) of \(input.count)")
        check(input.count - 8 == Int(input[2]) << 8 | Int(input[3]), "Length matches the datagram")
        check(header.qfi.map { $0 <= 63 } ?? true, "QFI")
    }
    for index in gtpuOpeners.indices {
        var datagram = input
        var span = datagram.mutableSpan, reply = replyBuffer.mutableSpan
        let opened = gtpuOpeners[index].open(&span, datagram: 0..<input.count, from: SocketAddress(ip: .v4(1), port: 2152), reply: &reply)
        switch opened {
        case let .forward(inner, _):
            guard case let .success(header) = parsed else { fatalError("forwarded what does not parse") }
            check(inner == header.content && header.type == GTPU.MessageType.gpdu && !inner.isEmpty, "forwarded range")
        case let .control(_, answer?), let .drop(_, answer?):
            check(answer.length > 0 && answer.length <= 64, "reply length \(answer.length)")
            check(GTPU.parse(replyBuffer.span, 0..<answer.length).isSuccess, "a reply we send parses")
        default:
            break
        }
    }
}

extension Result {
    var isSuccess: Bool { if case .success = self { true } else { false } }
}

// MARK: Seeds

func seeds() -> [String: [[UInt8]]] {
    let probe = PacketBuilder.probePacket(source: 0xC613_0001, destination: 0xC612_0202, destinationPort: 8080, sequence: 1, streamID: 2)
    var tcp = [UInt8](repeating: 0, count: 32)
    tcp[12] = 0x80
    tcp[13] = TCPFlag.ack
    tcp[20] = 1; tcp[21] = 1; tcp[22] = 8; tcp[23] = 10
    let bulk = [UInt8](repeating: 0x61, count: 4000)
    let tcpSuper = PacketBuilder.ipv4(proto: IPProtocolNumber.tcp, transport: tcp + bulk)
    var tso = VirtioNetHeader()
    tso.flags = VirtioNetHeader.needsChecksum
    tso.gsoTypeRaw = VirtioNetHeader.GSOType.tcpv4.rawValue
    tso.headerLength = 52
    tso.gsoSize = 1000
    tso.checksumStart = 20
    tso.checksumOffset = 16
    var uso = tso
    uso.gsoTypeRaw = VirtioNetHeader.GSOType.udpL4.rawValue
    uso.headerLength = 28
    uso.checksumOffset = 6
    func withHeader(_ header: VirtioNetHeader, _ packet: [UInt8]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: VirtioNetHeader.length)
        var span = bytes.mutableSpan
        header.encode(into: &span)
        return bytes + packet
    }
    var segments: [[UInt8]] = []
    var output = [UInt8](repeating: 0, count: 65536)
    var span = output.mutableSpan
    if case let .success(layout) = GSOSegmenter.segment(tcpSuper.span, header: tso, into: &span) {
        segments = (0..<layout.count).map { Array(output[($0 * layout.stride)..<($0 * layout.stride + layout.length(of: $0))]) }
    }
    let records = segments.flatMap { [UInt8($0.count >> 8), UInt8($0.count & 0xff)] + $0 }
    var sealer = AuthenticatedFraming(key: key, encrypt: true).makeSealer()
    var sealed = [UInt8](repeating: 0, count: 20) + probe + [UInt8](repeating: 0, count: 16)
    let sealedCount = sealed.count
    var sealedSpan = sealed.mutableSpan
    _ = sealer.seal(&sealedSpan, packet: 20..<(sealedCount - 16), session: PeerSession())
    return [
        "ip": [
            probe, tcpSuper, PacketBuilder.ipv6(transport: PacketBuilder.udp(payload: [1, 2, 3])),
            PacketBuilder.ipv4(
                flagsAndOffset: 0x2000, transport: Array(PacketBuilder.udp(payload: [UInt8](repeating: 7, count: 16)).prefix(16)))
        ],
        "probe": [Array(probe[28...])],
        "gso": [withHeader(tso, tcpSuper), withHeader(uso, PacketBuilder.ipv4(transport: PacketBuilder.udp(payload: bulk)))],
        "coalesce": [records, [1] + records],
        "open": [sealed, probe],
        "gtpu": gtpuSeeds(probe),
        "http": [
            "GET /metrics HTTP/1.1\r\nHost: relay:9101\r\nAccept: text/plain\r\n\r\n", "HEAD /metrics?x=1 HTTP/1.0\n\n",
            "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", "GET / HTTP/1.1\r\n\r\n"
        ].map { Array($0.utf8) },
        "wg-initiation": [wireGuard.initiation],
        "wg-response": [wireGuard.response, wireGuard.cookieReply, wireGuard.transport],
        "wg-config": wireGuardConfigSeeds(),
        "wg-uapi": wireGuardUAPISeeds(),
        "address": [
            "198.18.1.2:8080", "[2001:db8::1]:53", "198.18.0.0/15", "::ffff:198.18.0.1", "198.18.1.1/32=198.19.0.1/32,198.19.1.0/24"
        ].map { Array($0.utf8) }
    ]
}

/// G-PDUs with and without a container, a UDP Port extension, echo, end marker, error indication,
/// an unknown comprehension-required extension.
func gtpuSeeds(_ packet: [UInt8]) -> [[UInt8]] {
    func message(_ flags: UInt8, _ type: UInt8, _ teid: UInt32, _ rest: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = [
            flags, type, UInt8(rest.count >> 8), UInt8(rest.count & 0xff),
            UInt8(teid >> 24), UInt8(teid >> 16 & 0xff), UInt8(teid >> 8 & 0xff), UInt8(teid & 0xff)
        ]
        bytes += rest
        return bytes
    }
    return [
        message(0x30, 255, 0x100, packet),
        message(0x34, 255, 0x100, [0, 0, 0, 0x85, 1, 0x10, 9, 0] + packet),
        message(0x34, 255, 0x200, [0, 0, 0, 0x40, 1, 0x08, 0x68, 0x85, 2, 0x00, 0x85, 0x60, 0, 0, 0, 0] + packet),
        message(0x32, 1, 0, [0, 1, 0, 0]),
        message(0x32, 2, 0, [0, 1, 0, 0, 14, 0]),
        message(0x30, 254, 0x100, []),
        message(0x32, 26, 0, [0, 0, 0, 0, 16, 0, 0, 1, 0, 133, 0, 4, 198, 18, 1, 1]),
        message(0x34, 255, 0x100, [0, 0, 0, 0xC1, 1, 0, 0, 0] + packet)
    ]
}

func writeSeeds(to directory: String) {
    for (name, inputs) in seeds() {
        let folder = directory + "/" + name
        mkdir(folder, 0o755)
        for (index, bytes) in inputs.enumerated() {
            let path = folder + "/seed-\(index)"
            guard let file = fopen(path, "wb") else { fatalError("cannot write \(path)") }
            _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
            fclose(file)
        }
    }
}

#if FUZZING
    // SwiftPM links an executable's entry point as `<Target>_main`; hand it to libFuzzer's driver.
    @_silgen_name("LLVMFuzzerRunDriver")
    func runFuzzerDriver(
        _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    @_cdecl("Fuzz_main")
    public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
        var count = argc
        var arguments = argv
        return runFuzzerDriver(&count, &arguments) { data, size in fuzzOneInput(data, size) }
    }
#else
    @main
    struct SeedWriter {
        static func main() {
            if CommandLine.arguments.count == 3, CommandLine.arguments[1] == "seeds" {
                writeSeeds(to: CommandLine.arguments[2])
            } else {
                print("usage: udptun-fuzz seeds DIR   (the fuzzers themselves: Tests/Fuzz/run.sh)")
            }
        }
    }
#endif
