import Foundation
import Testing

@testable import CLI
@testable import Engine
@testable import KernelIO
@testable import TestSupport
@testable import WireFormat

@Suite("Relay policy, return routes and sysctl checks")
struct RelayLogicTests {
    /// A throwaway /proc/sys-like tree.
    final class FakeSysctl {
        let root: String
        init(_ values: [SysctlKey: Int]) throws {
            root = FileManager.default.temporaryDirectory.appendingPathComponent("sysctl-\(UUID())").path
            for (key, value) in values { try set(key, value) }
        }
        func set(_ key: SysctlKey, _ value: Int) throws {
            let sysctl = Sysctl(root: root)
            try FileManager.default.createDirectory(
                atPath: (sysctl.path(of: key) as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            // Like /proc/sys, the tree has its files before anything writes them.
            _ = FileManager.default.createFile(atPath: sysctl.path(of: key), contents: nil)
            try sysctl.write(key, value)
        }
        func remove() { try? FileManager.default.removeItem(atPath: root) }
    }

    static let tunKey = SysctlKey.interface("ipv4", "tun2", "rp_filter")

    func check(_ values: [SysctlKey: Int], ipv6: Bool = false) throws -> (FakeSysctl, ForwardingCheck) {
        let fake = try FakeSysctl(values)
        return (fake, ForwardingCheck(sysctl: Sysctl(root: fake.root), tunName: "tun2", forwardIPv6: ipv6))
    }

    @Test func passesWhenForwardingAndLooseFiltering() throws {
        let (fakeForwarding, forwarding) = try check([ForwardingCheck.ipForward: 1, ForwardingCheck.allRPFilter: 0, Self.tunKey: 2])
        defer { fakeForwarding.remove() }
        #expect(forwarding.failures().isEmpty)
        let (fakeAllloose, allLoose) = try check([ForwardingCheck.ipForward: 1, ForwardingCheck.allRPFilter: 2, Self.tunKey: 0])
        defer { fakeAllloose.remove() }
        #expect(allLoose.failures().isEmpty)
    }

    @Test func namesIPForwardWhenOff() throws {
        let (fakeForwarding, forwarding) = try check([ForwardingCheck.ipForward: 0, ForwardingCheck.allRPFilter: 0, Self.tunKey: 0])
        defer { fakeForwarding.remove() }
        let failures = forwarding.failures()
        #expect(failures.count == 1)
        #expect(failures[0].key.description == "net.ipv4.ip_forward")
        #expect(failures[0].fixCommand == "sysctl -w net.ipv4.ip_forward=1")
        #expect(failures[0].description.contains("= 0, needs 1"))
    }

    @Test func strictFilteringOnTheDeviceOrAllIsRefused() throws {
        let (fakeDevice, device) = try check([ForwardingCheck.ipForward: 1, ForwardingCheck.allRPFilter: 0, Self.tunKey: 1])
        defer { fakeDevice.remove() }
        #expect(device.failures().map(\.key.description) == ["net.ipv4.conf.tun2.rp_filter"])
        #expect(device.failures().first?.fixCommand == "sysctl -w net.ipv4.conf.tun2.rp_filter=2")
        // all=1 makes the effective value strict even though tun2 says 0; setting tun2 to 2 wins.
        let (fake, all) = try check([ForwardingCheck.ipForward: 1, ForwardingCheck.allRPFilter: 1, Self.tunKey: 0])
        defer { fake.remove() }
        #expect(all.failures().map(\.key.description) == ["net.ipv4.conf.all.rp_filter"])
        #expect(all.failures().first?.fixCommand == "sysctl -w net.ipv4.conf.tun2.rp_filter=2")
        let changes = try all.fix()
        #expect(changes == ["net.ipv4.conf.tun2.rp_filter: 0 → 2"])
        #expect(all.failures().isEmpty)
        #expect(Sysctl(root: fake.root).read(ForwardingCheck.allRPFilter) == 1)  // other interfaces untouched
    }

    @Test func missingDeviceFallsBackToDefault() throws {
        let (fakeForwarding, forwarding) = try check([
            ForwardingCheck.ipForward: 1, ForwardingCheck.allRPFilter: 0, ForwardingCheck.defaultRPFilter: 1
        ])
        defer { fakeForwarding.remove() }
        #expect(forwarding.failures().map(\.key.description) == ["net.ipv4.conf.default.rp_filter"])
    }

    @Test func ipv6ForwardingIsCheckedOnlyWhenAsked() throws {
        let values = [ForwardingCheck.ipForward: 1, ForwardingCheck.allRPFilter: 0, Self.tunKey: 0, ForwardingCheck.ipv6Forwarding: 0]
        let (fakeWithout, without) = try check(values)
        defer { fakeWithout.remove() }
        #expect(without.failures().isEmpty)
        let (fakeWith, with) = try check(values, ipv6: true)
        defer { fakeWith.remove() }
        #expect(with.failures().map(\.key.description) == ["net.ipv6.conf.all.forwarding"])
    }

    @Test func interfaceNamesWithDotsUseSlashes() {
        #expect(SysctlKey.interface("ipv4", "eth0.100", "rp_filter").description == "net.ipv4.conf.eth0/100.rp_filter")
        #expect(
            Sysctl(root: "/proc/sys").path(of: .interface("ipv4", "eth0.100", "rp_filter")) == "/proc/sys/net/ipv4/conf/eth0.100/rp_filter")
    }

    @Test func inboundPolicyRefusesOutsiders() throws {
        let policy = InboundPolicy(allowedSources: [try #require(IPPrefix("198.18.1.0/24"))])
        #expect(policy.refusal(for: SocketAddress(ip: try #require(IPAddress("198.18.1.9")), port: 1)) == nil)
        #expect(policy.refusal(for: SocketAddress(ip: try #require(IPAddress("198.18.2.9")), port: 1)) == .notAllowed)
        let client = InboundPolicy(onlyPeer: IPAddress("198.18.1.2"))
        #expect(client.refusal(for: SocketAddress(ip: try #require(IPAddress("198.18.1.2")), port: 8080)) == nil)
        #expect(client.refusal(for: SocketAddress(ip: try #require(IPAddress("198.18.1.3")), port: 8080)) == .unknownPeer)
        #expect(InboundPolicy().refusal(for: SocketAddress(ip: .v4(1), port: 1)) == nil)
    }

    func info(source: String, destination: String) throws -> IPPacketInfo {
        IPPacketInfo(
            version: 4, source: try #require(IPAddress(source)), destination: try #require(IPAddress(destination)),
            transportProtocol: IPProtocolNumber.udp, totalLength: 40, headerLength: 20, isFragment: false)
    }

    @Test func clientRulesParse() throws {
        let rule = try #require(PacketPolicy.ClientRule("198.18.1.1/32=198.19.0.1/32,198.19.1.0/24"))
        #expect(rule.peers == IPPrefix("198.18.1.1/32"))
        #expect(rule.innerSources == [try #require(IPPrefix("198.19.0.1/32")), try #require(IPPrefix("198.19.1.0/24"))])
        for bad in ["198.18.1.1", "198.18.1.1=", "=198.19.0.1", "198.18.1.1=x", "a=b=c", "198.18.1.1=198.19.0.1,"] {
            #expect(PacketPolicy.ClientRule(bad) == nil, "\(bad)")
        }
    }

    @Test func spoofedInnerSourcesAreRefused() throws {
        let policy = PacketPolicy(clientRules: [try #require(PacketPolicy.ClientRule("198.18.1.1/32=198.19.0.1/32"))])
        let client = try #require(IPAddress("198.18.1.1"))
        let other = try #require(IPAddress("198.18.1.9"))
        #expect(policy.refusal(for: try info(source: "198.19.0.1", destination: "198.18.2.2"), from: client) == nil)
        #expect(policy.refusal(for: try info(source: "198.19.0.2", destination: "198.18.2.2"), from: client) == .spoofedSource)
        // A client no rule names may not use any inner source.
        #expect(policy.refusal(for: try info(source: "198.19.0.1", destination: "198.18.2.2"), from: other) == .spoofedSource)
        // Without rules, sources are not checked.
        #expect(PacketPolicy().refusal(for: try info(source: "198.19.9.9", destination: "198.18.2.2"), from: other) == nil)
    }

    @Test func keyRulesParse() throws {
        let rule = try #require(PacketPolicy.KeyRule("/etc/udptun/alice.key=198.19.0.2/32,2001:db8::/64"))
        #expect(rule.path == "/etc/udptun/alice.key")
        #expect(rule.innerSources == [try #require(IPPrefix("198.19.0.2/32")), try #require(IPPrefix("2001:db8::/64"))])
        #expect(PacketPolicy.KeyRule("odd=name.key=198.19.0.2/32")?.path == "odd=name.key")  // split at the last '='
        for bad in ["alice.key", "alice.key=", "=198.19.0.2/32", "alice.key=x", "alice.key=198.19.0.2/32,"] {
            #expect(PacketPolicy.KeyRule(bad) == nil, "\(bad)")
        }
    }

    /// `--client-key`: each key's inner sources, on top of (never instead of) the underlay rules.
    @Test func innerSourcesFollowTheKey() throws {
        let alice = [try #require(IPPrefix("198.19.0.2/32"))]
        let policy = PacketPolicy(innerSourcesBySession: [nil, alice])  // key 0: shared, unlimited; key 1: alice's
        let peer = try #require(IPAddress("198.18.1.1"))
        let fromAlice = try info(source: "198.19.0.2", destination: "198.18.2.2")
        let fromBob = try info(source: "198.19.0.3", destination: "198.18.2.2")
        #expect(policy.refusal(for: fromAlice, from: peer, session: PeerSession(index: 1)) == nil)
        #expect(policy.refusal(for: fromBob, from: peer, session: PeerSession(index: 1)) == .spoofedSource)
        #expect(policy.refusal(for: fromBob, from: peer, session: PeerSession(index: 0)) == nil)
        #expect(PacketPolicy().refusal(for: fromBob, from: peer) == nil)  // raw framing: no session rules
        let both = PacketPolicy(
            clientRules: [try #require(PacketPolicy.ClientRule("198.18.1.1/32=198.19.0.3/32"))],
            innerSourcesBySession: [alice])
        #expect(
            both.refusal(for: fromAlice, from: peer, session: PeerSession(index: 0)) == .spoofedSource, "the underlay rule still applies")
        #expect(both.refusal(for: fromBob, from: peer, session: PeerSession(index: 0)) == .spoofedSource, "and so does the key's")
    }

    @Test func forbiddenAndNarrowedDestinations() throws {
        let own = try #require(IPAddress("198.18.2.1"))
        let peer = try #require(IPAddress("198.18.1.1"))
        let open = PacketPolicy(ownAddresses: [own])
        for destination in ["127.0.0.1", "169.254.1.1", "224.0.0.5", "239.1.2.3", "255.255.255.255", "0.1.2.3", "198.18.2.1"] {
            #expect(
                open.refusal(for: try info(source: "198.19.0.1", destination: destination), from: peer) == .forbiddenDestination,
                "\(destination)")
        }
        #expect(open.refusal(for: try info(source: "198.19.0.1", destination: "198.18.2.2"), from: peer) == nil)
        let narrowed = PacketPolicy(allowedDestinations: [try #require(IPPrefix("198.18.2.0/24"))], ownAddresses: [own])
        #expect(narrowed.refusal(for: try info(source: "198.19.0.1", destination: "198.18.2.2"), from: peer) == nil)
        #expect(narrowed.refusal(for: try info(source: "198.19.0.1", destination: "198.18.3.3"), from: peer) == .forbiddenDestination)
        #expect(narrowed.refusal(for: try info(source: "198.19.0.1", destination: "198.18.2.1"), from: peer) == .forbiddenDestination)
        var v6 = try info(source: "198.19.0.1", destination: "198.18.2.2")
        v6.version = 6
        for destination in ["::1", "fe80::1", "ff02::1", "::ffff:127.0.0.1"] {
            v6.destination = try #require(IPAddress(destination))
            #expect(open.refusal(for: v6, from: peer) == .forbiddenDestination, "\(destination)")
        }
    }

    @Test func rawFramingCarriesThePacketUnchanged() throws {
        let raw = RawFraming()
        var sealer = raw.makeSealer()
        var opener = raw.makeOpener()
        var slot = PacketBuilder.ipv4(transport: PacketBuilder.udp(payload: [1, 2, 3]))
        let original = slot
        let count = slot.count
        var span = slot.mutableSpan
        var reply = [UInt8](repeating: 0, count: 16)
        var replySpan = reply.mutableSpan
        let peer = SocketAddress(ip: .v4(1), port: 1)
        #expect(sealer.seal(&span, packet: 0..<count, session: PeerSession()) == 0..<count)
        #expect(opener.open(&span, datagram: 0..<count, from: peer, reply: &replySpan) == .forward(0..<count, session: PeerSession()))
        #expect(opener.open(&span, datagram: 0..<0, from: peer, reply: &replySpan) == .drop(.truncated, reply: nil))
        #expect(slot == original)
        #expect(raw.overhead == 0 && !raw.isAuthenticated)
    }

    @Test func jsonLinesEscapeAndKeepOrder() {
        var line = JSONLine()
        line.add("event", "final")
        line.add("n", 3)
        line.add("text", "a\"b\\c\n\u{1}")
        line.add("rate", 2.5)
        line.add("none", nil as Double?)
        #expect(line.description == #"{"event":"final","n":3,"text":"a\"b\\c\n\u0001","rate":2.5,"none":null}"#)
    }

    @Test func tunnelReportJSONHasTheDocumentedKeys() throws {
        var snapshot = TunnelSnapshot()
        snapshot[.received] = 10
        snapshot[.forwarded] = 8
        snapshot.drops[DropReason.badChecksum.rawValue] = 2
        snapshot[.received] += 3
        snapshot.controlReceived[ControlMessage.echoRequest.rawValue] = 2
        snapshot.controlReceived[ControlMessage.endMarker.rawValue] = 1
        snapshot.controlSent[ControlMessage.echoResponse.rawValue] = 2
        let line = TunnelReport(role: "relay", json: true)
            .line(event: "final", elapsed: 1, interval: 1, now: snapshot, previous: TunnelSnapshot())
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["event"] as? String == "final")
        #expect(object["received"] as? Int == 13)
        #expect(object["forwarded"] as? Int == 8)
        #expect(object["dropped"] as? Int == 2)
        #expect(object["control"] as? Int == 3, "received = forwarded + control + dropped")
        #expect((object["drops"] as? [String: Int])?["bad_checksum"] == 2)
        #expect((object["control_in"] as? [String: Int])?["echo_request"] == 2)
        #expect((object["control_in"] as? [String: Int])?["end_marker"] == 1)
        #expect((object["control_out"] as? [String: Int])?["echo_response"] == 2)
        #expect(object["control_send_failed"] as? Int == 0)
    }
}

@Suite("Deployment files")
struct DeploymentTests {
    /// The relay refuses to start when it cannot read its own addresses, which glibc reads over an
    /// AF_NETLINK socket: its unit must allow that family (the unit once did not, and the guard was
    /// silently off under it).
    /// The client's --keepalive names its device's addresses, read the same way; it refuses to start
    /// without them, so its unit must allow the family too.
    @Test(arguments: ["relay", "client"]) func unitAllowsNetlink(role: String) throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let unit = try String(contentsOf: root.appendingPathComponent("deploy/systemd/udptun-\(role).service"), encoding: .utf8)
        let families = unit.split(separator: "\n").filter { $0.hasPrefix("RestrictAddressFamilies=") }
        #expect(families.count == 1)
        #expect(families.first?.split(separator: "=")[1].split(separator: " ").contains("AF_NETLINK") == true)
    }
}
