import Foundation
import Testing

extension EndToEnd {
    /// `--queues N`: a multi-queue TUN device with a worker set and an SO_REUSEPORT socket per queue.
    @Suite("Multi-queue TUN", .requiresRoot)
    struct MultiQueueTests {
        /// Each queue's counts from a final report: tun_read and received for queues 0 and 1.
        private func perQueue(_ report: [String: Any]) -> (tunRead: [Int], received: [Int]) {
            ((0..<2).map { report.int("tun_read_q\($0)") }, (0..<2).map { report.int("received_q\($0)") })
        }

        @Test(
            "with --queues 2 at both ends, TCP crosses byte for byte, many flows use both queues at each end, and every count balances",
            arguments: [["--offload", "on"], ["--offload", "off"]])
        func twoQueuesCarryAndSpread(offload: [String]) throws {
            try Lab.ensureCommand("socat", package: "socat")
            try Lab.with(tunQueues: 2) { lab in
                let relay = try lab.relay(["--allow", "\(Lab.addressA)/32", "--queues", "2"] + offload)
                let client = try lab.client(["--relay", "\(Lab.addressB):8080", "--queues", "2"] + offload)
                try client.waitForLog("client tunnelling")
                for process in [relay, client] {
                    #expect(process.stderr.contains("queues=2"), "\(process.stderr)")
                    // Two threads per queue (the adaptive layout's duplex thread and its helper), named by queue.
                    let workers = process.threadAffinities().map(\.name).filter { $0.hasPrefix("tun⇄udp/") || $0.hasPrefix("udp→tun/") }
                    #expect(Set(workers) == ["tun⇄udp/0", "udp→tun/0", "tun⇄udp/1", "udp→tun/1"], "\(workers)")
                }
                try TCPTransfer.bothWays(lab, size: 8 << 20)
                // 24 more connections each way, each from its own port (even, as connect() picks them).
                // The kernel sends a flow out through the queue its replies were written through, so with
                // flows spread by their own hash each end reads the data of about half of them on each
                // queue. An end reads the data of the flows *to* the other side, so flows go both ways.
                for index in 0..<24 {
                    try TCPTransfer.transfer(lab, from: .a, to: .c, listenAddress: Lab.addressC, port: 5100 + index, size: 64 << 10)
                    try TCPTransfer.transfer(lab, from: .c, to: .a, listenAddress: Lab.innerA, port: 5200 + index, size: 64 << 10)
                }
                #expect(client.stop() == 0)
                #expect(relay.stop() == 0)
                for report in [try #require(client.report()), try #require(relay.report())] {
                    let role = report["role"] as? String ?? "?"
                    #expect(report.int("received") == report.int("forwarded") + report.int("dropped"), "\(role): \(report)")
                    #expect(report.int("tun_read") == report.int("sent") + report.int("dropped"), "\(role): \(report)")
                    #expect(report.int("dropped") == 0, "\(role): \(report)")
                    let queues = perQueue(report)
                    #expect(queues.tunRead.reduce(0, +) == report.int("tun_read"), "\(role): \(report)")
                    #expect(queues.received.reduce(0, +) == report.int("received"), "\(role): \(report)")
                    // 64 KiB is about 45 segments: four flows' data is 180. With every flow learned onto one
                    // queue the other reads about one packet per flow (before the kernel learns it), 24-48;
                    // with spread flows, four or fewer of 24 on one queue happens 3 times in 10,000.
                    #expect(queues.tunRead.allSatisfy { $0 >= 160 }, "\(role): flows not spread over the TUN queues: \(report)")
                }
            }
        }

        @Test("--queues 2 on a single-queue device and two relays on one port are refused with the fix, exit 78")
        func refusals() throws {
            try Lab.with { lab in  // tun1 and tun2 single-queue
                let client = try lab.client(["--relay", "\(Lab.addressB):8080", "--queues", "2"])
                #expect(client.wait(timeout: 15) == 78)
                #expect(client.stderr.contains("ip tuntap add dev tun1 mode tun multi_queue"), "\(client.stderr)")
                // A relay group holds the port: a second relay (its own, new device) may not join it.
                let first = try lab.relay(["--allow", "\(Lab.addressA)/32", "--queues", "2", "--tun", "mq0"])
                let second = try lab.spawn(
                    .b,
                    [
                        lab.binary("udptun-relay"), "--allow", "\(Lab.addressA)/32", "--queues", "2",
                        "--tun", "mq1"
                    ], name: "relay-second")
                #expect(second.wait(timeout: 15) == 78)
                #expect(second.stderr.contains("already in use"), "\(second.stderr)")
                #expect(first.stop() == 0)
            }
        }
    }
}
