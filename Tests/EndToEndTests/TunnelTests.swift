import Foundation
import TestSupport
import Testing

extension EndToEnd {
    /// The A → B → C path through real TUN devices in network namespaces. Needs root; skipped otherwise.
    @Suite("End to end through namespaces", .serialized, .requiresRoot)
    struct TunnelTests {
        @Test("10,000 generated payloads arrive exactly once, intact, and the counters balance")
        func tenThousandPayloads() throws {
            try Lab.with { lab in
                let relay = try lab.relay()
                let sink = try lab.sink(["--expect", "10000", "--timeout", "60"])
                let client = try lab.client([
                    "--relay", "\(Lab.addressB):8080", "--generate", "\(Lab.addressC):8080",
                    "--count", "10000", "--rate", "5000", "--size", "256"
                ])
                let sinkStatus = sink.wait(timeout: 70)
                #expect(sinkStatus == 0, "sink: \(sink.stderr)")
                // Let the last duplicates (if any were made) arrive before the sink's count is final.
                _ = client.stop()
                _ = relay.stop()
                let sinkReport = try #require(sink.report(), "sink printed no final report: \(sink.stdout)")
                #expect(sinkReport.int("received") == 10000)
                #expect(sinkReport.int("lost") == 0)
                #expect(sinkReport.int("corrupt") == 0)
                #expect(sinkReport.int("duplicates") == 0)
                #expect(sinkReport.int("unsequenced") == 0)
                let clientReport = try #require(client.report(), "client printed no final report: \(client.stdout)\(client.stderr)")
                let relayReport = try #require(relay.report(), "relay printed no final report: \(relay.stdout)\(relay.stderr)")
                #expect(clientReport.int("generated") == 10000)
                #expect(clientReport.int("sent") >= 10000)
                // Hop by hop: what the client sent the relay received; the relay forwarded or counted a drop.
                #expect(relayReport.int("received") == clientReport.int("sent"))
                #expect(relayReport.int("received") == relayReport.int("forwarded") + relayReport.int("dropped"))
                #expect(relayReport.int("forwarded") >= 10000)
            }
        }

        /// Data-plane configurations (the same flags on both ends) and the log line that proves each took effect.
        static let configurations: [(flags: [String], log: String)] = [
            (["--offload", "on"], "tun_tso_csum=on"),
            (["--offload", "off"], "offloads off"),
            (["--threads", "auto"], "threads=auto (both directions on one, the inbound on a second under load)"),
            (["--threads", "1"], "threads=1 (both directions)"),
            (["--threads", "1", "--busy-poll", "2000"], "busy_poll_us=2000"),
            (["--threads", "2", "--busy-poll", "2000"], "threads=2 (one per direction)"),
            (["--threads", "2", "--cpu", "0"], "cpus=0")
        ]

        @Test(
            "TCP crosses the tunnel both ways byte for byte, and pings return, in every data-plane configuration",
            arguments: configurations)
        func tcpBothWays(configuration: (flags: [String], log: String)) throws {
            try Lab.ensureCommand("socat", package: "socat")
            try Lab.ensureCommand("ping", package: "iputils-ping")
            // The layout both ends run: auto (the default) unless the configuration names one.
            let layout = configuration.flags.firstIndex(of: "--threads").map { configuration.flags[$0 + 1] } ?? "auto"
            try Lab.with { lab in
                let relay = try lab.relay(["--allow", "\(Lab.addressA)/32"] + configuration.flags)
                let client = try lab.client(["--relay", "\(Lab.addressB):8080"] + configuration.flags)
                try client.waitForLog("client tunnelling")
                #expect(
                    relay.stderr.contains(configuration.log) && client.stderr.contains(configuration.log),
                    "\(relay.stderr)\(client.stderr)")
                if let index = configuration.flags.firstIndex(of: "--cpu") {
                    let cpus = configuration.flags[index + 1]
                    let threads = configuration.flags.firstIndex(of: "--threads").flatMap { Int(configuration.flags[$0 + 1]) } ?? 2
                    for process in [relay, client] {
                        // The data-plane threads are named for their direction (tun→udp, udp→tun, tun⇄udp).
                        let workers = process.threadAffinities().filter { ["tun→udp", "udp→tun", "tun⇄udp"].contains($0.name) }
                        #expect(workers.count == threads)
                        #expect(workers.allSatisfy { $0.cpus == cpus }, "\(workers)")
                    }
                }
                let ping = lab.run(.a, ["ping", "-c", "20", "-i", "0.02", "-W", "1", Lab.addressC])
                #expect(ping.status == 0 && ping.stdout.contains("20 received"), "\(ping.stdout)\(ping.stderr)")
                try TCPTransfer.bothWays(lab, size: 16 << 20)
                Thread.sleep(forTimeInterval: 0.5)  // idle for longer than the adaptive layout's merge window
                #expect(client.stop() == 0)
                #expect(relay.stop() == 0)
                // Every packet is accounted for at both ends.
                for report in [try #require(client.report()), try #require(relay.report())] {
                    #expect(report.int("received") == report.int("forwarded") + report.int("dropped"))
                    #expect(report.int("tun_read") == report.int("sent") + report.int("dropped"))
                    #expect(report.int("dropped") == 0, "\(report)")
                    // An adaptive layout that split under the transfer merged again once it went idle
                    // (the stop came more than a merge window after the last packet).
                    #expect(report.int("thread_hand_overs") % 2 == 0, "\(report)")
                    // --threads 1 and 2 are fixed layouts: they never lend the inbound stage, however
                    // busy the transfer kept them (only auto builds a LentStage, StageLending.swift).
                    if layout != "auto" {
                        #expect(report.int("thread_hand_overs") == 0, "--threads \(layout): \(report)")
                    }
                }
            }
        }

        /// The benchmark's `ceiling` row bounds udptun's throughput with this program's; a bound is only
        /// worth its figure if the program really moves every byte through both TUN devices.
        @Test("the benchmark's copy-only ceiling (deploy/ceiling.c) carries TCP both ways byte for byte")
        func ceilingCarriesTCP() throws {
            try Lab.ensureCommand("socat", package: "socat")
            try Lab.ensureCommand("cc", package: "gcc")
            try Lab.with { lab in
                let program = lab.directory.appendingPathComponent("ceiling").path
                let build = Lab.shell(
                    [
                        "cc", "-O2", "-Wall", "-Werror", "-pthread", "-o", program,
                        Lab.packageRoot.appendingPathComponent("deploy/ceiling.c").path
                    ], timeout: 60)
                try #require(build.status == 0, "\(build.stderr)")
                try lab.spawn(.b, [program, "tun2", "\(Lab.addressB):9100", "\(Lab.addressA):9100"], name: "ceiling-b")
                try lab.spawn(.a, [program, "tun1", "\(Lab.addressA):9100", "\(Lab.addressB):9100"], name: "ceiling-a")
                let ping = lab.run(.a, ["ping", "-c", "5", "-i", "0.2", "-w", "10", Lab.addressC])
                #expect(ping.status == 0, "\(ping.stdout)\(ping.stderr)")
                try TCPTransfer.bothWays(lab, size: 16 << 20)
            }
        }

        @Test("the relay refuses to start while the kernel would not forward, naming the key and the fix")
        func sysctlRefusals() throws {
            try Lab.with { lab in
                let relay = [lab.binary("udptun-relay"), "--allow", "\(Lab.addressA)/32", "--interval", "0"]

                try lab.setSysctl(.b, "net.ipv4.ip_forward", 0)
                var result = lab.run(.b, relay, timeout: 15)
                #expect(result.status == 78)
                #expect(result.stderr.contains("net.ipv4.ip_forward = 0"))
                #expect(result.stderr.contains("sysctl -w net.ipv4.ip_forward=1"))
                result = lab.run(.b, [lab.binary("udptun-relay"), "--check"], timeout: 15)
                #expect(result.status == 78)
                #expect(result.stdout.contains("FAIL net.ipv4.ip_forward"))
                try lab.setSysctl(.b, "net.ipv4.ip_forward", 1)

                try lab.setSysctl(.b, "net.ipv4.conf.tun2.rp_filter", 1)
                result = lab.run(.b, relay, timeout: 15)
                #expect(result.status == 78)
                #expect(result.stderr.contains("net.ipv4.conf.tun2.rp_filter = 1"))
                #expect(!result.stderr.contains("ip_forward"))

                // Strict through conf.all: the effective value is the larger of all and tun2.
                try lab.setSysctl(.b, "net.ipv4.conf.tun2.rp_filter", 0)
                try lab.setSysctl(.b, "net.ipv4.conf.all.rp_filter", 1)
                result = lab.run(.b, relay, timeout: 15)
                #expect(result.status == 78)
                #expect(result.stderr.contains("net.ipv4.conf.all.rp_filter = 1"))
                #expect(result.stderr.contains("sysctl -w net.ipv4.conf.tun2.rp_filter=2"))

                // --fix-sysctl repairs it and starts; --check then passes.
                let fixed = try lab.relay(["--allow", "\(Lab.addressA)/32", "--fix-sysctl"])
                #expect(fixed.stderr.contains("net.ipv4.conf.tun2.rp_filter: 0 → 2"))
                #expect(fixed.stop() == 0)
                result = lab.run(.b, [lab.binary("udptun-relay"), "--check"], timeout: 15)
                #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
                #expect(result.stdout.contains("OK"))
            }
        }

        @Test("garbage datagrams are dropped by reason, reach nothing, and the relay keeps forwarding")
        func garbageIsDropped() throws {
            try Lab.ensureCommand("socat", package: "socat")
            try Lab.with { lab in
                let relay = try lab.relay()
                let sink = try lab.sink()
                let relayAddress = "\(Lab.addressB):8080"
                let source: UInt32 = 0xC613_0001, destination: UInt32 = 0xC612_0202
                let valid = PacketBuilder.probePacket(
                    source: source, destination: destination, destinationPort: 8080, sequence: 0, streamID: 77)

                var truncated = Array(valid.prefix(30))
                truncated[0] = 0x45
                var wrongVersion = valid
                wrongVersion[0] = 0x55
                var lengthMismatch = valid
                PacketBuilder.put16(&lengthMismatch, 2, UInt16(valid.count + 40))
                PacketBuilder.refreshIPv4Checksum(&lengthMismatch)
                var badChecksum = valid
                badChecksum[10] ^= 0x5a
                var random = SeededGenerator()
                let noise = (0..<20).map { _ in
                    let length = Int.random(in: 1...1400, using: &random)
                    return Lab.randomBytes(length, using: &random)
                }
                let garbage: [[UInt8]] =
                    [
                        Array(valid.prefix(12)), truncated, wrongVersion, lengthMismatch, badChecksum,
                        Array(valid.dropLast(3)), valid + [0, 0, 0]
                    ] + noise
                for datagram in garbage { try lab.sendDatagram(datagram, from: .a, to: relayAddress) }
                // Positive control: a valid packet after all that still goes through.
                try lab.sendDatagram(valid, from: .a, to: relayAddress)
                Thread.sleep(forTimeInterval: 0.5)
                #expect(relay.isRunning)
                #expect(relay.stop() == 0)
                #expect(sink.stop() == 0)
                let relayReport = try #require(relay.report())
                #expect(relayReport.int("received") == garbage.count + 1, "\(Lab.seedNote): \(relayReport)")
                #expect(relayReport.int("forwarded") == 1, "\(Lab.seedNote): \(relayReport)")
                #expect(relayReport.int("dropped") == garbage.count, "\(Lab.seedNote): \(relayReport)")
                #expect(relayReport.drop("truncated") >= 1)  // 12 bytes: not even an IPv4 header
                #expect(relayReport.drop("bad_version") >= 1)
                #expect(relayReport.drop("length_mismatch") >= 4)  // cut at 30, cut by 3, padded by 3, length field +40
                #expect(relayReport.drop("bad_checksum") >= 1)
                let sinkReport = try #require(sink.report())
                #expect(sinkReport.int("datagrams") == 1, "only the valid packet may reach C (\(Lab.seedNote))")
                #expect(sinkReport.int("received") == 1)
                #expect(sinkReport.int("corrupt") == 0)
            }
        }

        @Test("datagrams from a source outside --allow are dropped; the same packet from inside is forwarded")
        func allowListIsEnforced() throws {
            try Lab.ensureCommand("socat", package: "socat")
            try Lab.with { lab in
                let outsider = "198.18.1.3"
                #expect(lab.run(.a, ["ip", "addr", "add", "\(outsider)/24", "dev", "to-b"]).status == 0)
                let relay = try lab.relay(["--allow", "\(Lab.addressA)/32"])
                let sink = try lab.sink()
                let packet = PacketBuilder.probePacket(
                    source: 0xC613_0001, destination: 0xC612_0202, destinationPort: 8080, sequence: 0, streamID: 5)
                for _ in 0..<5 { try lab.sendDatagram(packet, from: .a, to: "\(Lab.addressB):8080", bind: outsider) }
                try lab.sendDatagram(packet, from: .a, to: "\(Lab.addressB):8080", bind: Lab.addressA)
                Thread.sleep(forTimeInterval: 0.5)
                #expect(relay.stop() == 0)
                #expect(sink.stop() == 0)
                let relayReport = try #require(relay.report())
                #expect(relayReport.drop("not_allowed") == 5)
                #expect(relayReport.int("forwarded") == 1)
                #expect(try #require(sink.report()).int("datagrams") == 1)
            }
        }

        @Test("a dual-stack relay on [::]:8080 serves IPv4 clients (v4-mapped peers) in both directions")
        func dualStackListener() throws {
            try Lab.ensureCommand("socat", package: "socat")
            try Lab.with { lab in
                let relay = try lab.relay(["--listen", "[::]:8080", "--allow", "\(Lab.addressA)/32"])
                let sink = try lab.sink(["--expect", "500", "--timeout", "30"])
                try lab.client(["--relay", "\(Lab.addressB):8080", "--generate", "\(Lab.addressC):8080", "--count", "500", "--rate", "1000"]
                )
                .waitForLog("client tunnelling")
                #expect(sink.wait(timeout: 40) == 0, "sink: \(sink.stdout)")
                try TCPTransfer.bothWays(lab, size: 1 << 20)
                #expect(relay.stop() == 0)
                let report = try #require(relay.report())
                #expect(report.drop("not_allowed") == 0)
                #expect(report.int("sent") > 0, "return traffic left through the IPv6 socket")
            }
        }

        @Test("the relay forwards only inner sources a client may use, and never to forbidden destinations")
        func packetPolicyIsEnforced() throws {
            try Lab.ensureCommand("socat", package: "socat")
            try Lab.with { lab in
                let relay = try lab.relay([
                    "--allow", "\(Lab.addressA)/32", "--allowed-ips", "\(Lab.addressA)/32=\(Lab.innerA)/32",
                    "--allow-dest", "198.18.2.0/24"
                ])
                let sink = try lab.sink()
                let inner: UInt32 = 0xC613_0001  // 198.19.0.1
                func packet(source: UInt32 = inner, destination: UInt32) -> [UInt8] {
                    PacketBuilder.probePacket(source: source, destination: destination, destinationPort: 8080, sequence: 0, streamID: 9)
                }
                let refused: [(String, [UInt8])] = [
                    ("spoofed source 198.19.0.99", packet(source: 0xC613_0063, destination: 0xC612_0202)),
                    ("loopback", packet(destination: 0x7F00_0001)),
                    ("the relay's own address", packet(destination: 0xC612_0201)),
                    ("multicast", packet(destination: 0xE000_0005)),
                    ("outside --allow-dest", packet(destination: 0xC612_0303))
                ]
                for (_, bytes) in refused { try lab.sendDatagram(bytes, from: .a, to: "\(Lab.addressB):8080") }
                try lab.sendDatagram(packet(destination: 0xC612_0202), from: .a, to: "\(Lab.addressB):8080")  // the control
                Thread.sleep(forTimeInterval: 0.5)
                #expect(relay.stop() == 0)
                #expect(sink.stop() == 0)
                let report = try #require(relay.report())
                #expect(report.drop("spoofed_source") == 1)
                #expect(report.drop("forbidden_destination") == 4)
                #expect(report.int("forwarded") == 1)
                #expect(try #require(sink.report()).int("datagrams") == 1)
            }
        }

        /// A client on A sealing and encrypting with `key`, its generator sending `count` probes to C.
        private func encryptedGenerator(
            _ lab: Lab, key: URL, count: Int, rate: Int, name: String = "client",
            exitWhenDone: Bool = false
        ) throws -> Spawned {
            try lab.client(
                [
                    "--relay", "\(Lab.addressB):8080", "--key-file", key.path, "--encrypt",
                    "--generate", "\(Lab.addressC):8080", "--count", "\(count)", "--rate", "\(rate)"
                ]
                    + (exitWhenDone ? ["--exit-when-done"] : []), name: name)
        }

        @Test("with a shared key: encrypted tunnel works both ways; a wrong key and raw packets get nothing through")
        func authenticatedTunnel() throws {
            try Lab.ensureCommand("socat", package: "socat")
            try Lab.with { lab in
                let key = try lab.file("key", Array((Lab.shell([lab.binary("udptun-relay"), "--genkey"], timeout: 10).stdout).utf8))
                let wrongKey = try lab.file(
                    "wrong-key", Array((Lab.shell([lab.binary("udptun-relay"), "--genkey"], timeout: 10).stdout).utf8))
                chmod(key.path, 0o600)
                chmod(wrongKey.path, 0o600)
                let relay = try lab.relay(["--allow", "\(Lab.addressA)/32", "--key-file", key.path, "--encrypt"])
                let sink = try lab.sink(["--expect", "2000", "--timeout", "30"])
                // An intruder with the wrong key, and raw injection: nothing may reach C.
                let intruder = try encryptedGenerator(lab, key: wrongKey, count: 500, rate: 2000, name: "intruder", exitWhenDone: true)
                #expect(intruder.wait(timeout: 15) == 0)
                try lab.sendDatagram(
                    PacketBuilder.probePacket(
                        source: 0xC613_0001, destination: 0xC612_0202, destinationPort: 8080,
                        sequence: 0, streamID: 3), from: .a, to: "\(Lab.addressB):8080")
                Thread.sleep(forTimeInterval: 0.3)
                let client = try encryptedGenerator(lab, key: key, count: 2000, rate: 4000)
                #expect(sink.wait(timeout: 40) == 0, "sink: \(sink.stdout)")
                let sinkReport = try #require(sink.report())
                #expect(sinkReport.int("received") == 2000)
                #expect(sinkReport.int("unsequenced") == 0, "nothing from the intruder or the raw packet")
                #expect(sinkReport.int("streams") == 1)
                try TCPTransfer.bothWays(lab, size: 8 << 20)
                #expect(client.stop() == 0)
                #expect(relay.stop() == 0)
                let relayReport = try #require(relay.report())
                // A wrong key is refused by its key id (or, 1 time in 65,536 when the ids clash, by its tag).
                #expect(relayReport.drop("unknown_key") + relayReport.drop("bad_tag") >= 500)
                #expect(relayReport.drop("bad_framing") == 1)
                #expect(relayReport.drop("replayed") == 0)
                #expect(relay.stderr.contains("framing chacha20-poly1305"))
            }
        }

        @Test(
            "with --cipher: AES-256-GCM carries TCP both ways byte for byte, also beside a ChaCha20-Poly1305 peer",
            arguments: [("aes-256-gcm", "aes-256-gcm"), ("aes-256-gcm", "chacha20-poly1305")])
        func cipherChoice(ciphers: (client: String, relay: String)) throws {
            try Lab.ensureCommand("socat", package: "socat")
            try Lab.with { lab in
                let key = try lab.file("key", Array((Lab.shell([lab.binary("udptun-relay"), "--genkey"], timeout: 10).stdout).utf8))
                chmod(key.path, 0o600)
                let relay = try lab.relay(["--allow", "\(Lab.addressA)/32", "--key-file", key.path, "--encrypt", "--cipher", ciphers.relay])
                let client = try lab.client([
                    "--relay", "\(Lab.addressB):8080", "--key-file", key.path, "--encrypt", "--cipher", ciphers.client
                ])
                try client.waitForLog("client tunnelling")
                #expect(client.stderr.contains("framing \(ciphers.client)") && relay.stderr.contains("framing \(ciphers.relay)"))
                try TCPTransfer.bothWays(lab, size: 8 << 20)
                #expect(client.stop() == 0)
                #expect(relay.stop() == 0)
                for report in [try #require(client.report()), try #require(relay.report())] {
                    #expect(report.int("dropped") == 0, "\(report)")
                    #expect(report.int("received") == report.int("forwarded"))
                }
            }
        }

        @Test(
            "with --client-key: each client's key carries only its own inner addresses, replies are sealed with it, and a client with another's key gets nothing through"
        )
        func perClientKeys() throws {
            try Lab.ensureCommand("socat", package: "socat")
            try Lab.with { lab in
                func newKey(_ name: String) throws -> URL {
                    let url = try lab.file(name, Array(Lab.shell([lab.binary("udptun-relay"), "--genkey"], timeout: 10).stdout.utf8))
                    chmod(url.path, 0o600)
                    return url
                }
                let alice = try newKey("alice.key"), bob = try newKey("bob.key")
                // Alice owns tunnel address 198.19.0.1 (A's tun1), Bob 198.19.0.9. Alice's key is the second,
                // so replies to her must be sealed with a key other than the relay's first.
                let relay = try lab.relay([
                    "--allow", "\(Lab.addressA)/32", "--encrypt",
                    "--client-key", "\(bob.path)=198.19.0.9/32", "--client-key", "\(alice.path)=\(Lab.innerA)/32"
                ])
                #expect(relay.stderr.contains("client_keys=2"), "\(relay.stderr)")
                let sink = try lab.sink(["--expect", "1000", "--timeout", "30"])
                // Bob's key from Alice's address: authenticated, but not for this inner source.
                let impostor = try encryptedGenerator(lab, key: bob, count: 300, rate: 2000, name: "impostor", exitWhenDone: true)
                #expect(impostor.wait(timeout: 15) == 0)
                let client = try encryptedGenerator(lab, key: alice, count: 1000, rate: 4000)
                #expect(sink.wait(timeout: 40) == 0, "sink: \(sink.stdout)")
                let sinkReport = try #require(sink.report())
                #expect(sinkReport.int("received") == 1000)
                #expect(sinkReport.int("streams") == 1, "nothing from the impostor")
                try TCPTransfer.bothWays(lab, size: 1 << 20)
                #expect(client.stop() == 0)
                #expect(relay.stop() == 0)
                let clientReport = try #require(client.report())
                #expect(clientReport.drop("unknown_key") == 0 && clientReport.drop("bad_tag") == 0, "replies sealed with Alice's key")
                let relayReport = try #require(relay.report())
                #expect(relayReport.drop("spoofed_source") >= 300)
                #expect(relayReport.drop("unknown_key") == 0)
                #expect(relayReport.drop("bad_tag") == 0)
            }
        }

        @Test("a relay that is down (ICMP port unreachable) does not stop the client; delivery starts when it comes up")
        func clientSurvivesRelayDown() throws {
            try Lab.with { lab in
                let sink = try lab.sink()
                let client = try lab.client([
                    "--relay", "\(Lab.addressB):8080", "--generate", "\(Lab.addressC):8080",
                    "--rate", "500", "--duration", "20"
                ])
                try client.waitForLog("generator starting")
                Thread.sleep(forTimeInterval: 1.5)  // ~750 datagrams meet a closed port: ICMP errors come back
                #expect(client.isRunning, "client died while the relay was down: \(client.stderr)")
                let relay = try lab.relay()
                Thread.sleep(forTimeInterval: 1.5)
                #expect(client.isRunning)
                #expect(client.stop() == 0, "\(client.stderr)")
                #expect(relay.stop() == 0)
                #expect(sink.stop() == 0)
                let received = try #require(sink.report()).int("received")
                #expect(received > 300, "delivery did not resume after the relay started (received \(received))")
                #expect(try #require(sink.report()).int("corrupt") == 0)
            }
        }
    }
}

/// Moves a few megabytes over TCP through the tunnel in each direction and compares the bytes.
enum TCPTransfer {
    static func bothWays(_ lab: Lab, size: Int = 4 << 20) throws {
        try transfer(lab, from: .a, to: .c, listenAddress: Lab.addressC, port: 5001, size: size)
        try transfer(lab, from: .c, to: .a, listenAddress: Lab.innerA, port: 5002, size: size)
    }

    static func transfer(_ lab: Lab, from sender: Lab.Node, to receiver: Lab.Node, listenAddress: String, port: Int, size: Int) throws {
        // Each connection's bytes from the run's seed (and its port, so no two connections carry the same).
        var random = SeededGenerator(seed: TestSeed.value &+ UInt64(port))
        let original = Lab.randomBytes(size, using: &random)
        let input = try lab.file("tcp-\(port).in", original)
        let output = lab.directory.appendingPathComponent("tcp-\(port).out")
        let listener = try lab.spawn(
            receiver,
            [
                "socat", "-u", "TCP-LISTEN:\(port),bind=\(listenAddress),reuseaddr",
                "OPEN:\(output.path),creat,trunc"
            ], name: "tcp-listen-\(port)")
        var sent = Lab.Shell(status: -1, stdout: "", stderr: "")
        for _ in 0..<50 {  // the listener needs a moment to bind
            sent = lab.run(sender, ["socat", "-u", "OPEN:\(input.path)", "TCP:\(listenAddress):\(port),connect-timeout=5"], timeout: 30)
            if sent.status == 0 { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        #expect(sent.status == 0, "TCP send \(sender) → \(receiver) failed: \(sent.stderr)")
        #expect(listener.wait(timeout: 30) == 0, "listener: \(listener.stderr)")
        let received = try Data(contentsOf: output)
        #expect(received.count == original.count, "\(sender) → \(receiver): \(received.count) of \(original.count) bytes (\(Lab.seedNote))")
        #expect(received == Data(original), "\(sender) → \(receiver): bytes differ (\(Lab.seedNote))")
    }
}
