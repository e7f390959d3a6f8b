import Foundation
import Testing

extension EndToEnd {
    /// The client behind a NAT whose UDP mappings expire after 2 s: with `--keepalive 1` replies from
    /// C still reach it after a long silence; without, the relay's return path points at a mapping the
    /// NAT has forgotten, and C's packets die there (docs/operations.md, "Behind NAT").
    @Suite("Behind NAT: keepalive", .serialized, .requiresRoot)
    struct NATTests {
        /// Rewires the lab as A — N — B: A keeps its inner side, gets 198.18.3.1/24 toward N, and N
        /// masquerades A behind 198.18.1.1 (the address the relay allows) with `timeout`-second UDP
        /// conntrack entries.
        static func insertNAT(_ lab: Lab, timeout: Int) throws -> String {
            try Lab.ensureCommand("nft", package: "nftables")
            let nat = try lab.addNamespace("n")
            func inNAT(_ command: [String]) throws {
                let result = Lab.shell(["ip", "netns", "exec", nat] + command, timeout: 10)
                guard result.status == 0 else { throw LabError("\(command.joined(separator: " ")) in \(nat): \(result.stderr)") }
            }
            let a = lab.namespace(.a), b = lab.namespace(.b)
            try lab.runAll([(.a, ["ip", "link", "del", "to-b"])])  // takes B's to-a with it
            for command in [
                ["ip", "-n", a, "link", "add", "to-n", "type", "veth", "peer", "name", "to-a", "netns", nat],
                ["ip", "-n", nat, "link", "add", "to-b", "type", "veth", "peer", "name", "to-n", "netns", b]
            ] {
                let result = Lab.shell(command, timeout: 10)
                guard result.status == 0 else { throw LabError("\(command.joined(separator: " ")): \(result.stderr)") }
            }
            try lab.runAll([
                (.a, ["ip", "addr", "add", "198.18.3.1/24", "dev", "to-n"]),
                (.a, ["ip", "link", "set", "to-n", "up"]),
                (.a, ["ip", "route", "add", "198.18.1.0/24", "via", "198.18.3.2"]),
                (.b, ["ip", "addr", "add", "\(Lab.addressB)/24", "dev", "to-n"]),
                (.b, ["ip", "link", "set", "to-n", "up"])
            ])
            try inNAT(["ip", "link", "set", "lo", "up"])
            try inNAT(["ip", "addr", "add", "198.18.3.2/24", "dev", "to-a"])
            try inNAT(["ip", "addr", "add", "\(Lab.addressA)/24", "dev", "to-b"])
            try inNAT(["ip", "link", "set", "to-a", "up"])
            try inNAT(["ip", "link", "set", "to-b", "up"])
            try inNAT(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            let rules = try lab.file(
                "nat.nft",
                Array(
                    """
                    table ip udptun_nat {
                        chain postrouting {
                            type nat hook postrouting priority srcnat; policy accept;
                            oifname "to-b" masquerade
                        }
                    }
                    """.utf8))
            try inNAT(["nft", "-f", rules.path])
            // Both the unreplied and the assured ("stream") timeouts: the tunnel's flow sees replies.
            try inNAT(["sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=\(timeout)"])
            try inNAT(["sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout_stream=\(timeout)"])
            return nat
        }

        /// After a silence longer than the NAT's timeout, does a datagram C sends to the client's inner
        /// address arrive? Returns that and the client's and relay's final reports.
        static func replyAfterSilence(keepalive: Double?) throws -> (arrived: Bool, client: [String: Any], relay: [String: Any]) {
            return try Lab.with { lab in
                _ = try insertNAT(lab, timeout: 2)
                let relay = try lab.relay()
                let client = try lab.client(["--relay", "\(Lab.addressB):8080"] + (keepalive.map { ["--keepalive", "\($0)"] } ?? []))
                try client.waitForLog("client tunnelling")
                // One exchange teaches the relay the return path (the NAT's address and port).
                let ping = lab.run(.a, ["ping", "-c", "1", "-W", "5", Lab.addressC], timeout: 10)
                #expect(ping.status == 0, "the tunnel works through the NAT: \(ping.stdout)\(ping.stderr)")
                let received = lab.directory.appendingPathComponent("received")
                let listener = try lab.spawn(
                    .a, ["socat", "-u", "UDP4-RECV:9000,bind=\(Lab.innerA)", "CREATE:\(received.path)"], name: "listener")
                Thread.sleep(forTimeInterval: 5)  // 2.5 NAT timeouts of silence
                try lab.sendDatagram(Array("after the silence".utf8), from: .c, to: "\(Lab.innerA):9000")
                var arrived = false
                for _ in 0..<30 where !arrived {
                    Thread.sleep(forTimeInterval: 0.1)
                    arrived = Lab.read(received) == "after the silence"
                }
                listener.stop()
                #expect(client.stop() == 0)
                #expect(relay.stop() == 0)
                return (arrived, try #require(client.report()), try #require(relay.report()))
            }
        }

        @Test(
            "with --keepalive 1, a reply after 5 s of silence crosses a NAT that forgets in 2 s; the relay counts the keepalives and forwards none"
        )
        func keepaliveHoldsTheMapping() throws {
            try Lab.ensureCommand("socat", package: "socat")
            let (arrived, client, relay) = try Self.replyAfterSilence(keepalive: 1)
            #expect(arrived, "C's datagram reached the client through the NAT")
            let sent = (client["control_out"] as? [String: Any])?["keepalive"] as? Int ?? 0
            let counted = (relay["control_in"] as? [String: Any])?["keepalive"] as? Int ?? 0
            #expect(sent >= 3 && counted == sent, "client sent \(sent), relay counted \(counted)")
            #expect(relay.int("forwarded") == 1, "the ping only: keepalives are never forwarded")
            let listed = relay["client_list"] as? [[String: Any]] ?? []
            #expect(listed.count == 1 && listed.first?["inner"] as? String == Lab.innerA)
            #expect(listed.first.map { ($0["idle_s"] as? Double ?? 99) < 2 } == true, "keepalives kept the client fresh: \(listed)")
            #expect(
                listed.first?["from_client"] as? Int == 1 && listed.first?["to_client"] as? Int == 2,
                "the ping one way; its reply and C's datagram the other: \(listed)")
        }

        @Test("without --keepalive the same reply dies at the NAT (what the keepalive is for)")
        func withoutKeepaliveTheMappingGoes() throws {
            try Lab.ensureCommand("socat", package: "socat")
            let (arrived, client, relay) = try Self.replyAfterSilence(keepalive: nil)
            #expect(!arrived)
            #expect((client["control_out"] as? [String: Any])?["keepalive"] as? Int == 0)
            #expect((relay["control_in"] as? [String: Any])?["keepalive"] as? Int == 0)
            #expect(relay.int("sent") >= 2, "the relay did send it, toward a mapping that was gone")
        }
    }
}
