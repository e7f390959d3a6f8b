import TestSupport
import Testing
import WireFormat

@testable import WireGuard

private let privateText = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
private let peerA = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
private let peerB = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="
private let pskText = "FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE="

private let fullExample = """
    # wg(8)'s example, every key of the format
    [Interface]
    PrivateKey = \(privateText)
    ListenPort = 51820
    fwmark = 0x1234

    [Peer]
    PublicKey = \(peerA)
    PresharedKey = \(pskText)
    Endpoint = 198.18.0.1:51820   # the relay
    AllowedIPs = 198.18.10.0/24, 2001:db8:a::/48
    AllowedIPs = 198.18.11.1
    PersistentKeepalive = 25

    [peer]
    publickey = \(peerB)
    ENDPOINT = [2001:db8::2]:443
    AllowedIPs = 198.18.20.0/24,198.18.10.0/24
    PersistentKeepalive = off
    """

@Suite("WireGuard configuration")
struct WireGuardConfigurationTests {
    @Test func fullExampleParses() throws {
        let config = try WireGuardConfiguration(parsing: fullExample)
        #expect(config.privateKey?.bytes == PrivateKey(base64: privateText)!.bytes)
        #expect(config.listenPort == 51820)
        #expect(config.fwmark == 0x1234)
        #expect(config.peers.count == 2)
        let a = config.peers[0]
        #expect(a.publicKey == PublicKey(base64: peerA)!)
        #expect(a.presharedKey?.bytes == PresharedKey(base64: pskText)!.bytes)
        #expect(a.endpoint == .address(SocketAddress(ip: IPAddress("198.18.0.1")!, port: 51820)))
        // 198.18.10.0/24 moved to the later peer, as a device routes it (wg's behaviour).
        #expect(a.allowedIPs == [IPPrefix("2001:db8:a::/48")!, IPPrefix("198.18.11.1/32")!])
        #expect(a.persistentKeepalive == 25)
        let b = config.peers[1]
        #expect(b.endpoint == .address(SocketAddress(ip: IPAddress("2001:db8::2")!, port: 443)))
        #expect(b.allowedIPs == [IPPrefix("198.18.20.0/24")!, IPPrefix("198.18.10.0/24")!])
        #expect(b.persistentKeepalive == 0 && b.presharedKey == nil)
    }

    @Test func crlfLinesAreLines() throws {
        let crlf = try WireGuardConfiguration(parsing: fullExample.split(separator: "\n").joined(separator: "\r\n"))
        #expect(crlf == (try WireGuardConfiguration(parsing: fullExample)))
        #expect(
            throws: WireGuardConfigurationError(
                line: 3, message: "unknown [Interface] key Colour (expected PrivateKey, ListenPort or FwMark)")
        ) {
            try WireGuardConfiguration(parsing: "[Interface]\r\nListenPort=1\r\nColour=blue\r\n")
        }
        #expect(try UAPI.parseSet("listen_port=1\r\nfwmark=2\r\n\r\nlisten_port=x") == [.listenPort(1), .fwmark(2)])
    }

    @Test func hostEndpointsAreLeftForTheCLI() throws {
        let config = try WireGuardConfiguration(parsing: "[Peer]\nPublicKey=\(peerA)\nEndpoint = relay.example:51820\n")
        #expect(config.peers[0].endpoint == .host("relay.example", port: 51820))
        #expect(throws: UAPIError.self) { try UAPI.setRequest(for: config) }
    }

    @Test func overlappingButDifferentPrefixesStayOnBothPeers() throws {
        let config = try WireGuardConfiguration(
            parsing: "[Peer]\nPublicKey=\(peerA)\nAllowedIPs=198.18.0.0/16\n[Peer]\nPublicKey=\(peerB)\nAllowedIPs=198.18.1.0/24\n")
        #expect(config.peers.map(\.allowedIPs.count) == [1, 1])
    }

    @Test(arguments: [
        ("[Interface]\nAddress = 198.18.0.1/24", 2, "Address belongs to wg-quick"),
        ("[Interface]\n\n DNS = 1.1.1.1", 3, "DNS belongs to wg-quick"),
        ("[Interface]\nMTU=1420", 2, "MTU belongs to wg-quick"),
        ("[Interface]\nTable=off", 2, "Table belongs to wg-quick"),
        ("[Interface]\nPostUp=iptables", 2, "PostUp belongs to wg-quick"),
        ("[Interface]\nSaveConfig=true", 2, "SaveConfig belongs to wg-quick"),
        ("PrivateKey = \(privateText)", 1, "before any [Interface] or [Peer] section"),
        ("[Interface]\nPrivateKey = abc", 2, "PrivateKey is not a base64 32-byte key"),
        ("[Interface]\nListenPort = 70000", 2, "ListenPort \"70000\" is not a port"),
        ("[Interface]\nFwMark = 0xzz", 2, "FwMark \"0xzz\" is not off"),
        ("[Interface]\nColour = blue", 2, "unknown [Interface] key Colour"),
        ("[Interfaces]", 1, "unknown section [Interfaces]"),
        ("[Interface]\njunk", 2, "expected Key = Value"),
        ("\n[Peer]\nAllowedIPs = 198.18.0.0/24", 3, "AllowedIPs before the peer's PublicKey"),
        ("[Peer]\n# nothing\n", 1, "a [Peer] section without PublicKey"),
        ("[Peer]\nPublicKey=\(peerA)\n[Peer]\nPublicKey=\(peerB)\n[Peer]\nPublicKey=\(peerA)", 6, "already defined on line 2"),
        ("[Peer]\nPublicKey=\(peerA)\nPublicKey=\(peerB)", 3, "a second PublicKey"),
        ("[Peer]\nPublicKey=AAAA", 2, "PublicKey is not a base64 32-byte key"),
        ("[Peer]\nPublicKey=\(peerA)\nPresharedKey=zz", 3, "PresharedKey is not a base64"),
        ("[Peer]\nPublicKey=\(peerA)\nAllowedIPs=198.18.0.0/33", 3, "\"198.18.0.0/33\" is not an address"),
        ("[Peer]\nPublicKey=\(peerA)\nAllowedIPs=198.18.0.0/24,,", 3, "\"\" is not an address"),
        ("[Peer]\nPublicKey=\(peerA)\nEndpoint=198.18.0.1", 3, "Endpoint \"198.18.0.1\" is not host:port"),
        ("[Peer]\nPublicKey=\(peerA)\nEndpoint=[198.18.0.1]:1", 3, "is not host:port"),
        ("[Peer]\nPublicKey=\(peerA)\nEndpoint=2001:db8::1:80", 3, "is not host:port"),
        ("[Peer]\nPublicKey=\(peerA)\nPersistentKeepalive=-1", 3, "PersistentKeepalive \"-1\""),
        ("[Peer]\nPublicKey=\(peerA)\nKeepalive=5", 3, "unknown [Peer] key Keepalive"),
        ("[Interface]\nListenPort=1\n" + String(repeating: "#", count: 5000), 3, "line over 4096 bytes")
    ])
    func errorsNameTheLine(text: String, line: Int, message: String) {
        do {
            let config = try WireGuardConfiguration(parsing: text)
            Issue.record("accepted \(text): \(config.peers.count) peers")
        } catch {
            #expect(error.line == line, "\(error)")
            #expect(error.message.contains(message), "\(error)")
            #expect(!error.description.contains("\n"))
            #expect(error.description.hasPrefix("line \(line): "))
        }
    }

    @Test func wgQuickMessageSaysWhatToUse() {
        #expect(
            throws: WireGuardConfigurationError(
                line: 2,
                message: "Address belongs to wg-quick, not to wg's configuration file: give the tunnel addresses with udptun's own options"
            )
        ) { try WireGuardConfiguration(parsing: "[Interface]\nAddress = 198.18.0.1/24") }
    }

    @Test func oversizedFileIsRefused() {
        let text = String(repeating: "#\n", count: WireGuardConfiguration.Limits.fileBytes / 2 + 1)
        #expect(throws: WireGuardConfigurationError(line: 0, message: "the file is over \(WireGuardConfiguration.Limits.fileBytes) bytes"))
        {
            try WireGuardConfiguration(parsing: text)
        }
    }

    @Test func tenThousandPeersParse() throws {
        var generator = SeededGenerator()
        print("seed \(TestSeed.value)")
        var text = "[Interface]\nListenPort = 51820\n"
        for i in 0..<12_000 {
            let key = PublicKey(bytes: (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })!
            text += "[Peer]\nPublicKey = \(key)\nAllowedIPs = 198.18.\(i / 256).\(i % 256)/32, 2001:db8::\(String(i, radix: 16))/128\n"
        }
        let config = try WireGuardConfiguration(parsing: text)
        #expect(config.peers.count == 12_000)
        #expect(config.peers.allSatisfy { $0.allowedIPs.count == 2 })
    }

    @Test func showconfText() throws {
        let config = try WireGuardConfiguration(parsing: fullExample)
        #expect(
            config.text == """
                [Interface]
                ListenPort = 51820
                FwMark = 0x1234
                PrivateKey = \(privateText)

                [Peer]
                PublicKey = \(peerA)
                PresharedKey = \(pskText)
                AllowedIPs = 2001:db8:a::/48, 198.18.11.1/32
                Endpoint = 198.18.0.1:51820
                PersistentKeepalive = 25

                [Peer]
                PublicKey = \(peerB)
                AllowedIPs = 198.18.20.0/24, 198.18.10.0/24
                Endpoint = [2001:db8::2]:443

                """)
        #expect(try WireGuardConfiguration(parsing: config.text) == config)
    }

    /// Random configurations: showconf text parses back to the same value, and so does the set=1
    /// body applied to an empty device and the get=1 answer read back.
    @Test func randomConfigurationsRoundTrip() throws {
        print("seed \(TestSeed.value)")
        var generator = SeededGenerator()
        func bytes() -> [UInt8] { (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) } }
        for round in 0..<200 {
            var config = WireGuardConfiguration()
            if Bool.random(using: &generator) { config.privateKey = PrivateKey(bytes: bytes())! }
            config.listenPort = Bool.random(using: &generator) ? UInt16.random(in: 1...65535, using: &generator) : 0
            config.fwmark = Bool.random(using: &generator) ? UInt32.random(in: 1...UInt32.max, using: &generator) : 0
            var used = Set<IPPrefix>()
            for _ in 0..<Int.random(in: 0...6, using: &generator) {
                var peer = WireGuardPeer(publicKey: PublicKey(bytes: bytes())!)
                if Bool.random(using: &generator) { peer.presharedKey = PresharedKey(bytes: bytes())! }
                switch Int.random(in: 0...2, using: &generator) {
                case 0:
                    peer.endpoint = .address(
                        SocketAddress(ip: .v4(UInt32.random(in: 0xC612_0000...0xC613_FFFF, using: &generator)), port: 51820))
                case 1:
                    peer.endpoint = .address(
                        SocketAddress(
                            ip: .v6(0x2001_0db8_0000_0000 | UInt64.random(in: 0...0xFFFF, using: &generator), 1),
                            port: UInt16.random(in: 1...65535, using: &generator)))
                default: break
                }
                peer.persistentKeepalive = Bool.random(using: &generator) ? UInt16.random(in: 1...65535, using: &generator) : 0
                for _ in 0..<Int.random(in: 0...5, using: &generator) {
                    let prefix =
                        Bool.random(using: &generator)
                        ? IPPrefix(
                            address: .v4(UInt32.random(in: 0...UInt32.max, using: &generator)),
                            length: Int.random(in: 0...32, using: &generator))!
                        : IPPrefix(
                            address: .v6(
                                UInt64.random(in: 0...UInt64.max, using: &generator), UInt64.random(in: 0...UInt64.max, using: &generator)),
                            length: Int.random(in: 0...128, using: &generator))!
                    if used.insert(prefix).inserted { peer.allowedIPs.append(prefix) }
                }
                config.peers.append(peer)
            }
            #expect(try WireGuardConfiguration(parsing: config.text) == config, "round \(round): \(config.text)")
            var device = WireGuardConfiguration(listenPort: 9, peers: [WireGuardPeer(publicKey: PublicKey(bytes: bytes())!)])
            let body = try UAPI.setRequest(for: config)
            #expect(body.hasPrefix("set=1\n"))
            try UAPI.apply(try UAPI.parseSet(String(body.dropFirst(6))), to: &device)
            #expect(device == config, "round \(round): \(body)")
            let (back, stats) = try UAPI.parseGet(UAPI.getResponse(for: config))
            #expect(back == config, "round \(round)")
            #expect(stats.count == config.peers.count)
        }
    }
}

@Suite("WireGuard UAPI")
struct WireGuardUAPITests {
    /// Written from wireguard-go's device/uapi.go (IpcGetOperation and IpcHandle): interface keys
    /// only when set, then per peer public_key, preshared_key (zeros when none), protocol_version,
    /// endpoint when known, handshake time, counters, keepalive, allowed_ip lines; then errno=0.
    @Test func getResponseMatchesWireGuardGo() throws {
        var config = try WireGuardConfiguration(parsing: fullExample)
        config.fwmark = 0
        let stats = [
            PublicKey(base64: peerA)!: UAPIPeerStats(lastHandshakeUnixNanoseconds: 1_765_000_000_123_456_789, txBytes: 1234, rxBytes: 5678)
        ]
        #expect(
            UAPI.getResponse(for: config, stats: stats) == """
                private_key=c809f3e5317e9575c9b5ed78b638b7ce530dabe85ddab614220241801ddf0669
                listen_port=51820
                public_key=c53201039adba14be71f886da1d8dbe9eebded08cb111b75340078999aa9f038
                preshared_key=1690b2870b3d731c16a15e3110bb5f26f8c937ecd05513c84a59515a07a8a551
                protocol_version=1
                endpoint=198.18.0.1:51820
                last_handshake_time_sec=1765000000
                last_handshake_time_nsec=123456789
                tx_bytes=1234
                rx_bytes=5678
                persistent_keepalive_interval=25
                allowed_ip=2001:db8:a::/48
                allowed_ip=198.18.11.1/32
                public_key=4eb32f4a83f88d842563a448cc181bb2c42a637bf12363e2fb2ef594e5965d7d
                preshared_key=0000000000000000000000000000000000000000000000000000000000000000
                protocol_version=1
                endpoint=[2001:db8::2]:443
                last_handshake_time_sec=0
                last_handshake_time_nsec=0
                tx_bytes=0
                rx_bytes=0
                persistent_keepalive_interval=0
                allowed_ip=198.18.20.0/24
                allowed_ip=198.18.10.0/24
                errno=0


                """)
    }

    /// `wg set`: change one peer, add another, remove a third, keep the rest.
    @Test func setSemantics() throws {
        var device = try WireGuardConfiguration(parsing: fullExample)
        let a = hex(PublicKey(base64: peerA)!.bytes), b = hex(PublicKey(base64: peerB)!.bytes)
        let c = String(repeating: "ab", count: 32)
        let body = """
            listen_port=4000
            public_key=\(a)
            update_only=true
            replace_allowed_ips=true
            allowed_ip=198.18.99.0/24
            persistent_keepalive_interval=0
            public_key=\(c)
            update_only=true
            allowed_ip=198.18.98.0/24
            public_key=\(b)
            remove=true
            public_key=\(c)
            endpoint=198.18.0.9:7
            allowed_ip=198.18.99.0/24
            allowed_ip=198.18.97.0/24
            allowed_ip=-198.18.97.0/24
            allowed_ip=-198.18.20.0/24
            protocol_version=1

            ignored=after the blank line
            """
        try UAPI.apply(try UAPI.parseSet(body), to: &device)
        #expect(device.listenPort == 4000 && device.fwmark == 0x1234)
        #expect(device.peers.map(\.publicKey.description) == [peerA, PublicKey(bytes: [UInt8](repeating: 0xab, count: 32))!.base64])
        #expect(device.peers[0].allowedIPs.isEmpty)  // its one prefix went to the later peer
        #expect(device.peers[0].persistentKeepalive == 0 && device.peers[0].presharedKey != nil)
        // Its -198.18.20.0/24 removed nothing: that prefix was peer b's, and b is gone with it.
        #expect(device.peers[1].allowedIPs == [IPPrefix("198.18.99.0/24")!])
        #expect(device.peers[1].endpoint == .address(SocketAddress(ip: IPAddress("198.18.0.9")!, port: 7)))
    }

    /// `allowed_ip=-prefix` removes a prefix from the peer named, never from another peer.
    @Test func removingAnAllowedIP() throws {
        var device = try WireGuardConfiguration(parsing: fullExample)
        let a = hex(PublicKey(base64: peerA)!.bytes), b = hex(PublicKey(base64: peerB)!.bytes)
        try UAPI.apply(
            try UAPI.parseSet(
                "public_key=\(b)\nallowed_ip=-198.18.11.1/32\nallowed_ip=-198.18.20.0/24\npublic_key=\(a)\nallowed_ip=-2001:db8:a::/48\n"),
            to: &device)
        #expect(device.peers[0].allowedIPs == [IPPrefix("198.18.11.1/32")!])
        #expect(device.peers[1].allowedIPs == [IPPrefix("198.18.10.0/24")!])
    }

    @Test func ownKeyIsNotAPeer() throws {
        let key = PrivateKey(base64: privateText)!
        var device = WireGuardConfiguration()
        try UAPI.apply(
            try UAPI.parseSet("private_key=\(hex(key.bytes))\npublic_key=\(hex(key.publicKey.bytes))\nallowed_ip=198.18.0.0/24\n"),
            to: &device)
        #expect(device.peers.isEmpty && device.privateKey != nil)
        try UAPI.apply(try UAPI.parseSet("private_key=\(String(repeating: "0", count: 64))\n"), to: &device)
        #expect(device.privateKey == nil)
    }

    @Test func upperCaseHexIsTakenAsGoDoes() throws {
        let operations = try UAPI.parseSet("public_key=\(String(repeating: "AB", count: 32))\n")
        #expect(operations == [.peer(PublicKey(bytes: [UInt8](repeating: 0xab, count: 32))!)])
    }

    @Test(arguments: [
        ("listen_port", -71), ("listen_port=x", -22), ("listen_port=65536", -22), ("listen_port=+1", -22),
        ("fwmark=4294967296", -22), ("private_key=00", -22), ("replace_peers=false", -22), ("colour=blue", -22),
        ("allowed_ip=198.18.0.0/24", -22), ("public_key=\(String(repeating: "g", count: 64))", -22),
        ("public_key=\(String(repeating: "a", count: 64))\nallowed_ip=198.18.0.1", -22),
        ("public_key=\(String(repeating: "a", count: 64))\nendpoint=relay:1", -22),
        ("public_key=\(String(repeating: "a", count: 64))\nprotocol_version=2", -22),
        ("public_key=\(String(repeating: "a", count: 64))\nremove=1", -22),
        ("public_key=\(String(repeating: "a", count: 64))\nlisten_port=1", -22),
        ("public_key=\(String(repeating: "a", count: 64))\npersistent_keepalive_interval=65536", -22),
        ("allowed_ip=" + String(repeating: "1", count: 300), -71)
    ])
    func setErrors(body: String, errno: Int) {
        do {
            let operations = try UAPI.parseSet(body)
            Issue.record("accepted \(body): \(operations.count) operations")
        } catch {
            #expect(error.errno == errno, "\(error)")
            #expect(error.response == "errno=\(errno)\n\n")
        }
    }
}
