import Foundation
import Glibc
import Testing

extension EndToEnd {
    /// Faults mid-stream: processes killed and restarted, devices deleted. Nothing may crash, and
    /// delivery resumes within a second of the component coming back.
    @Suite("Faults", .serialized, .requiresRoot)
    struct FaultTests {
        /// Asserts that the sink's count grows within one second.
        func expectDeliveryResumes(_ sink: Spawned, after what: String, sourceLocation: SourceLocation = #_sourceLocation) {
            let before = sink.latestReceived
            Thread.sleep(forTimeInterval: 1.0)
            let after = sink.latestReceived
            #expect(
                after > before + 100, "delivery did not resume within 1 s of \(what): \(before) → \(after)", sourceLocation: sourceLocation)
        }

        func startSink(_ lab: Lab, name: String = "sink") throws -> Spawned {
            try lab.spawn(.c, [lab.binary("udptun-sink"), "--json", "--interval", "0.1", "--listen", "\(Lab.addressC):8080"], name: name)
        }

        /// `bind` keeps the client's UDP endpoint across a restart: the relay keeps an address in use
        /// bound to its endpoint (a new port is refused for 10 s after the old one's last packet).
        func startClient(_ lab: Lab, name: String = "client", bind: String? = nil) throws -> Spawned {
            try lab.client(
                [
                    "--relay", "\(Lab.addressB):8080", "--generate", "\(Lab.addressC):8080", "--rate", "1000",
                    "--duration", "30"
                ] + (bind.map { ["--bind", $0] } ?? []), name: name)
        }

        /// Sink, relay and a generating client, with delivery under way.
        func startTrio(_ lab: Lab) throws -> (sink: Spawned, relay: Spawned, client: Spawned) {
            let sink = try startSink(lab)
            try sink.waitForLog("sink listening")
            let relay = try lab.relay()
            let client = try startClient(lab)
            try client.waitForLog("generator starting")
            Thread.sleep(forTimeInterval: 1)
            #expect(sink.latestReceived > 500)
            return (sink, relay, client)
        }

        @Test("relay killed and restarted: the client keeps running and delivery resumes within a second")
        func relayRestart() throws {
            try Lab.with { lab in
                let (sink, relay, client) = try startTrio(lab)
                kill(relay.process.processIdentifier, SIGKILL)  // a crash, not a clean stop
                _ = relay.wait(timeout: 5)
                Thread.sleep(forTimeInterval: 0.5)
                #expect(client.isRunning, "client died with the relay: \(client.stderr)")
                _ = try lab.relay(name: "relay-restarted")
                expectDeliveryResumes(sink, after: "the relay restarted")
                #expect(client.stop() == 0)
            }
        }

        @Test("sink and client restarted: each new process gets traffic within a second")
        func sinkAndClientRestart() throws {
            try Lab.with { lab in
                _ = try lab.relay()
                let firstSink = try startSink(lab)
                try firstSink.waitForLog("sink listening")
                let client = try startClient(lab, bind: "\(Lab.addressA):40100")
                try client.waitForLog("generator starting")
                Thread.sleep(forTimeInterval: 0.5)
                #expect(firstSink.stop() == 0)
                let secondSink = try startSink(lab, name: "sink-restarted")
                try secondSink.waitForLog("sink listening")
                expectDeliveryResumes(secondSink, after: "the sink restarted")

                kill(client.process.processIdentifier, SIGKILL)
                _ = client.wait(timeout: 5)
                let restarted = try startClient(lab, name: "client-restarted", bind: "\(Lab.addressA):40100")
                try restarted.waitForLog("generator starting")
                expectDeliveryResumes(secondSink, after: "the client restarted")
                #expect(restarted.stop() == 0)
                let report = try #require(secondSink.stop() == 0 ? secondSink.report() : nil)
                #expect(report.int("corrupt") == 0)
                #expect(report.int("streams") == 2, "the restarted client's stream is told apart")
            }
        }

        @Test("tun2 set down: the relay drops and counts what it cannot write and runs on; up: delivery resumes; deleted: it exits")
        func relayDeviceDownAndUp() throws {
            try Lab.with { lab in
                let (sink, relay, client) = try startTrio(lab)
                #expect(lab.run(.b, ["ip", "link", "set", "tun2", "down"]).status == 0)
                Thread.sleep(forTimeInterval: 1)  // writes to tun2 fail with EIO
                #expect(relay.isRunning, "a device that is down is not gone: \(relay.stderr)")
                #expect(lab.run(.b, ["ip", "link", "set", "tun2", "up"]).status == 0)
                // Down took the kernel's routes through tun2 with it (the return route, which loose
                // reverse-path filtering needs for the clients' sources): put it back, as host.sh does.
                #expect(lab.run(.b, ["ip", "route", "replace", "198.19.0.0/24", "dev", "tun2"]).status == 0)
                expectDeliveryResumes(sink, after: "tun2 came back up")
                #expect(relay.isRunning)
                #expect(lab.run(.b, ["ip", "link", "del", "tun2"]).status == 0)
                let status = relay.wait(timeout: 10)
                #expect(status == 1, "relay exit status \(String(describing: status)): \(relay.stderr)")
                #expect(relay.stderr.contains("error: TUN device tun2 disappeared"), "\(relay.stderr)")
                let report = try #require(relay.report(), "final report printed")
                #expect(report.drop("tun_write_failed") > 0, "the packets that met the device down were counted: \(report)")
                #expect(client.stop() == 0)
            }
        }

        @Test(
            "a TUN device deleted under a running process: a clear error and exit 1, with the final report", arguments: ["relay", "client"])
        func tunDeviceDeleted(role: String) throws {
            try Lab.with { lab in
                let relay = try lab.relay()
                let client = try lab.client(["--relay", "\(Lab.addressB):8080", "--generate", "\(Lab.addressC):8080", "--rate", "200"])
                try client.waitForLog("generator starting")
                let (victim, node, device) = role == "relay" ? (relay, Lab.Node.b, "tun2") : (client, Lab.Node.a, "tun1")
                #expect(lab.run(node, ["ip", "link", "del", device]).status == 0)
                let status = victim.wait(timeout: 10)
                #expect(status == 1, "\(role) exit status \(String(describing: status)): \(victim.stderr)")
                #expect(victim.stderr.contains("error: TUN device \(device) disappeared"), "\(victim.stderr)")
                #expect(victim.report() != nil, "final report printed")
            }
        }
    }
}
