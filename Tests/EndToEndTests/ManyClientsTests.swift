import Foundation
import TestSupport
import Testing

extension EndToEnd {
    /// The relay as a hub: thousands of clients, churn from a misbehaving one, replies from the address
    /// each client used, and ICMP instead of a black hole for packets too big.
    @Suite("Relay for many clients", .serialized, .requiresRoot)
    struct ManyClientsTests {
        static let swarm = Lab.packageRoot.appendingPathComponent("Tests/scripts/swarm.py").path
        static let secondAddressB = "198.18.1.4"

        /// Routes the whole 198.19.0.0/16 through the relay (the lab routes only its /24), and starts
        /// C's echo server.
        static func prepareForSwarm(_ lab: Lab) throws -> Spawned {
            for (node, command) in [
                (Lab.Node.b, ["ip", "route", "replace", "198.19.0.0/16", "dev", "tun2"]),
                (.c, ["ip", "route", "replace", "198.19.0.0/16", "via", "198.18.2.1"])
            ] {
                let result = lab.run(node, command)
                guard result.status == 0 else { throw LabError("\(command): \(result.stderr)") }
            }
            let echo = try lab.spawn(.c, ["python3", swarm, "echo", "--listen", "\(Lab.addressC):7", "--seconds", "120"], name: "echo")
            for _ in 0..<100 where !echo.stdout.contains("echo listening") { usleep(50_000) }
            return echo
        }

        static func swarmReport(_ result: Lab.Shell) -> [String: Any] {
            for line in result.stdout.split(separator: "\n").reversed() {
                if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] { return object }
            }
            return [:]
        }

        @Test("10,000 clients through one relay: every answer reaches the socket whose inner address it is for, and no other")
        func tenThousandClients() throws {
            try Lab.with { lab in
                let echo = try Self.prepareForSwarm(lab)
                let relay = try lab.relay(["--allow", "198.18.1.0/24"])
                let result = lab.run(
                    .a,
                    [
                        "python3", Self.swarm, "clients", "--relay", "\(Lab.addressB):8080", "--clients", "10000",
                        "--packets", "2", "--target", "\(Lab.addressC):7", "--seconds", "60"
                    ], timeout: 90)
                let outcome = Self.swarmReport(result)
                #expect(relay.stop() == 0)
                _ = echo.stop()
                let report = try #require(relay.report())
                #expect(report.int("clients") == 10_000 && report.int("dropped") == 0, "\(report)")
                #expect(report.int("forwarded") == 20_000 && report.int("sent") == report.int("tun_read"), "\(report)")
                // Every answer the relay sent reached the socket whose inner address it was for, and no other.
                #expect(
                    outcome.int("sent") == 20_000 && outcome.int("answered") == report.int("sent")
                        && outcome.int("misdelivered") == 0 && outcome.int("malformed") == 0,
                    "\(outcome) \(result.stderr)")
                // Between the relay's TUN write and its TUN read the packets cross kernel queues (tun2's, C's
                // echo socket) that a 2-vCPU host running the other suites can overflow now and then: a few
                // may go missing there, never in the relay. Each lost one can silence at most one client.
                let missing = 20_000 - outcome.int("answered")
                #expect(missing <= 200, "\(outcome)")
                #expect(outcome.int("clients_answered") >= 10_000 - missing, "\(outcome)")
            }
        }

        @Test("a relay listening on 0.0.0.0 with two addresses answers each client from the address it sent to")
        func repliesFromTheAddressUsed() throws {
            try Lab.ensureCommand("ping", package: "iputils-ping")
            try Lab.with { lab in
                #expect(lab.run(.b, ["ip", "addr", "add", "\(Self.secondAddressB)/24", "dev", "to-a"]).status == 0)
                let echo = try Self.prepareForSwarm(lab)
                let relay = try lab.relay(["--allow", "198.18.1.0/24", "--listen", "0.0.0.0:8080"])
                // udptun-client aimed at the second address: it takes replies only from there.
                let client = try lab.client(["--relay", "\(Self.secondAddressB):8080"])
                try client.waitForLog("client tunnelling")
                let ping = lab.run(.a, ["ping", "-c", "3", "-i", "0.2", "-W", "2", Lab.addressC])
                #expect(ping.stdout.contains("3 received"), "\(ping.stdout)")
                // And 200 raw clients alternating between the two addresses, each on a connected socket.
                let result = lab.run(
                    .a,
                    [
                        "python3", Self.swarm, "clients", "--relay", "\(Lab.addressB):8080",
                        "--relay", "\(Self.secondAddressB):8080", "--clients", "200", "--packets", "3",
                        "--inner", "198.19.128.0/17", "--target", "\(Lab.addressC):7", "--seconds", "30"
                    ], timeout: 60)
                let outcome = Self.swarmReport(result)
                #expect(result.status == 0 && outcome.int("answered") == 600, "\(outcome) \(result.stderr)")
                #expect(client.stop() == 0)
                #expect(relay.stop() == 0)
                _ = echo.stop()
                let report = try #require(relay.report())
                #expect(report.int("send_failed") <= 0 && report.int("dropped") == 0, "\(report)")
            }
        }

        @Test("a sender cycling through 100,000 inner sources is held back and counted; an established client loses nothing")
        func churnDoesNotHurtKnownClients() throws {
            try Lab.with { lab in
                #expect(lab.run(.a, ["ip", "addr", "add", "198.18.1.3/24", "dev", "to-b"]).status == 0)
                let relay = try lab.relay(["--allow", "198.18.1.0/24", "--max-clients", "2000", "--new-clients-per-second", "1000"])
                let sink = try lab.sink(["--expect", "8000", "--timeout", "40"])
                let client = try lab.client([
                    "--relay", Lab.addressB, "--generate", "\(Lab.addressC):8080", "--count", "8000",
                    "--rate", "2000"
                ])
                try client.waitForLog("client tunnelling")
                Thread.sleep(forTimeInterval: 1)  // the client is established before the churn starts
                // Paced at 50,000 a second: churn, not an overload of the relay (a load test is not a test).
                let churn = lab.run(
                    .a,
                    [
                        "python3", Self.swarm, "churn", "--relay", "\(Lab.addressB):8080", "--bind", "198.18.1.3",
                        "--sources", "100000", "--rate", "50000", "--target", "\(Lab.addressC):9", "--seconds", "20"
                    ],
                    timeout: 40)
                #expect(Self.swarmReport(churn).int("sent") == 100_000, "\(churn.stdout) \(churn.stderr)")
                #expect(sink.wait(timeout: 45) == 0, "sink: \(sink.stderr)")
                #expect(client.stop() == 0)
                #expect(relay.stop() == 0)
                let sinkReport = try #require(sink.report())
                #expect(sinkReport.int("received") == 8000 && sinkReport.int("lost") == 0, "\(sinkReport)")
                let report = try #require(relay.report())
                // Every churn datagram the relay read was forwarded (a new source within budget) or refused.
                let refused = report.drop("new_client_limit") + report.drop("client_table_full")
                #expect(report.drop("new_client_limit") > 0 && refused > 50_000, "\(report)")
                #expect(report.int("received") - 8000 <= refused + 2000, "\(report)")
                #expect(report.int("clients") <= 2000 && report.int("clients") > 1, "\(report)")
                #expect(report.int("received") == report.int("forwarded") + report.int("control") + report.int("dropped"))
            }
        }

        @Test("raw mode: a second client claiming an active client's inner address is refused; the first keeps its replies")
        func anAddressInUseStaysWithItsClient() throws {
            try Lab.with { lab in
                #expect(lab.run(.a, ["ip", "addr", "add", "198.18.1.3/24", "dev", "to-b"]).status == 0)
                let echo = try Self.prepareForSwarm(lab)
                let relay = try lab.relay(["--allow", "198.18.1.0/24"])
                // The owner streams from innerA at 198.18.1.1; from its 26th packet on, a claimer at
                // 198.18.1.3 sends from innerA too, between each two of the owner's.
                let result = lab.run(
                    .a,
                    [
                        "python3", Self.swarm, "claim", "--relay", "\(Lab.addressB):8080", "--owner", Lab.addressA,
                        "--bind", "198.18.1.3", "--inner", "\(Lab.innerA)/32", "--target", "\(Lab.addressC):7",
                        "--packets", "100", "--seconds", "15"
                    ], timeout: 30)
                let outcome = Self.swarmReport(result)
                #expect(relay.stop() == 0)
                _ = echo.stop()
                let report = try #require(relay.report())
                #expect(outcome.int("owner_sent") == 100 && outcome.int("claimer_sent") == 75, "\(outcome) \(result.stderr)")
                #expect(
                    outcome.int("claimer_got_owner") == 0 && outcome.int("claimer_got_claimer") == 0,
                    "the claimer gets nothing: \(outcome)")
                #expect(outcome.int("owner_got_claimer") == 0 && outcome.int("malformed") == 0, "\(outcome)")
                // Kernel queues on a loaded host may lose an echo now and then, never the relay.
                #expect(outcome.int("owner_got_owner") >= 95, "the owner's replies keep reaching it: \(outcome)")
                #expect(report.drop("address_in_use") == 75 && report.int("forwarded") == 100, "\(report)")
                let listed = report["client_list"] as? [[String: Any]] ?? []
                #expect(
                    listed.count == 1 && (listed.first?["endpoint"] as? String)?.hasPrefix("\(Lab.addressA):") == true,
                    "innerA is still the owner's: \(listed)")
                #expect(report.int("received") == report.int("forwarded") + report.int("control") + report.int("dropped"))
            }
        }

        @Test("packets too big for the relay's device: ICMP fragmentation needed comes back, and a 4 MiB TCP transfer completes")
        func fragmentationNeeded() throws {
            try Lab.ensureCommand("socat", package: "socat")
            try Lab.ensureCommand("ping", package: "iputils-ping")
            try Lab.with { lab in
                let relay = try lab.relay(["--allow", "\(Lab.addressA)/32", "--mtu", "1400"])
                let client = try lab.client(["--relay", Lab.addressB])  // tun1 MTU 1472: what fits in one datagram
                try client.waitForLog("client tunnelling")
                let ping = lab.run(.a, ["ping", "-M", "do", "-s", "1444", "-c", "1", "-W", "2", Lab.addressC])
                #expect(ping.stdout.contains("Frag needed and DF set (mtu = 1400)"), "\(ping.stdout) \(ping.stderr)")
                // Forget the learned path MTU, so TCP starts too big again and must learn it from the relay.
                #expect(lab.run(.a, ["ip", "route", "flush", "cache"]).status == 0)
                try Self.transfer(lab, to: Lab.addressC)
                #expect(client.stop() == 0)
                #expect(relay.stop() == 0)
                let report = try #require(relay.report())
                #expect(report.int("too_big_sent") >= 2 && report.drop("oversize") >= report.int("too_big_sent"), "\(report)")
            }
        }

        @Test("the same for IPv6: ICMPv6 packet too big comes back, and a 4 MiB TCP transfer completes")
        func packetTooBig() throws {
            try Lab.ensureCommand("socat", package: "socat")
            try Lab.ensureCommand("ping", package: "iputils-ping")
            try Lab.with { lab in
                try lab.prepareInnerIPv6()
                let relay = try lab.relay(["--allow", "\(Lab.addressA)/32", "--ipv6", "--mtu", "1400"])
                let client = try lab.client(["--relay", Lab.addressB])
                try client.waitForLog("client tunnelling")
                try lab.addInnerIPv6ToClient()
                let ping = lab.run(.a, ["ping", "-6", "-M", "do", "-s", "1424", "-c", "1", "-W", "2", "2001:db8:2::2"])
                #expect(ping.stdout.contains("Packet too big: mtu=1400"), "\(ping.stdout) \(ping.stderr)")
                #expect(lab.run(.a, ["ip", "-6", "route", "flush", "cache"]).status == 0)
                try Self.transfer(lab, to: "[2001:db8:2::2]", listenOptions: ",pf=ip6")
                #expect(client.stop() == 0)
                #expect(relay.stop() == 0)
                let report = try #require(relay.report())
                #expect(report.int("too_big_sent") >= 2 && report.drop("oversize") >= report.int("too_big_sent"), "\(report)")
            }
        }

        /// 4 MiB of random bytes from A to C over TCP through the tunnel, compared byte for byte.
        static func transfer(_ lab: Lab, to address: String, listenOptions: String = "") throws {
            var random = SeededGenerator()
            let payload = try lab.file("payload", Lab.randomBytes(4 << 20, using: &random))
            let received = lab.directory.appendingPathComponent("received")
            // socat's own inactivity limit (-T), not timeout(1): children of a test thread inherit its
            // blocked signals, SIGALRM among them, so timeout(1) would never fire.
            let listener = try lab.spawn(
                .c,
                [
                    "socat", "-T", "10", "-u", "TCP-LISTEN:5001,reuseaddr\(listenOptions)",
                    "CREATE:\(received.path)"
                ], name: "tcp-listener")
            usleep(300_000)
            let send = lab.run(.a, ["socat", "-T", "10", "-u", "OPEN:\(payload.path)", "TCP:\(address):5001"], timeout: 40)
            #expect(send.status == 0, "sender: \(send.stderr)")
            #expect(listener.wait(timeout: 10) == 0, "listener: \(listener.stderr)")
            #expect(
                FileManager.default.contents(atPath: received.path) == FileManager.default.contents(atPath: payload.path),
                "the 4 MiB arrived intact (\(Lab.seedNote))")
        }
    }
}
