import WireFormat
import WireGuard

// The WireGuard configuration layer as an operator's file or a UAPI client reaches it: any bytes as
// a `wg setconf` file (wg-config) and as a `set=1` body applied to a two-peer device (wg-uapi).

nonisolated(unsafe) let uapiDevice = try! WireGuardConfiguration(
    parsing: """
        [Interface]
        PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
        ListenPort = 51820
        [Peer]
        PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
        AllowedIPs = 198.18.10.0/24, 2001:db8:a::/48
        Endpoint = 198.18.0.1:51820
        [Peer]
        PublicKey = TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=
        AllowedIPs = 198.18.20.0/24
        """)

/// What every accepted configuration keeps: peers unique, each prefix on one peer, within limits.
func checkConfiguration(_ config: WireGuardConfiguration, _ what: String) {
    check(config.peers.count <= WireGuardConfiguration.Limits.peers, "\(what): \(config.peers.count) peers")
    check(Set(config.peers.map(\.publicKey)).count == config.peers.count, "\(what): a repeated peer")
    let prefixes = config.peers.flatMap(\.allowedIPs)
    check(Set(prefixes).count == prefixes.count, "\(what): a prefix on two peers or twice on one")
    check(config.peers.allSatisfy { $0.presharedKey.map { $0.bytes.contains { $0 != 0 } } ?? true }, "\(what): a zero psk")
}

func fuzzWireGuardConfig(_ input: [UInt8]) {
    let text = String(decoding: input, as: UTF8.self)
    let config: WireGuardConfiguration
    do { config = try WireGuardConfiguration(parsing: text) } catch {
        check(!error.description.contains("\n") || error.message.contains("\""), "a multi-line error: \(error)")
        return
    }
    checkConfiguration(config, "parsed")
    guard let again = try? WireGuardConfiguration(parsing: config.text) else { return check(false, "showconf text refused") }
    check(again == config, "showconf text parsed to another configuration")
}

func fuzzWireGuardUAPI(_ input: [UInt8]) {
    let body = String(decoding: input, as: UTF8.self)
    guard let operations = try? UAPI.parseSet(body) else { return }
    var device = uapiDevice
    do { try UAPI.apply(operations, to: &device) } catch { return check(device == uapiDevice, "a refused request changed the device") }
    checkConfiguration(device, "applied")
    guard let (back, _) = try? UAPI.parseGet(UAPI.getResponse(for: device)) else { return check(false, "get=1 answer refused") }
    check(back == device, "get=1 answer read back as another configuration")
    guard let request = try? UAPI.setRequest(for: device), let replay = try? UAPI.parseSet(String(request.dropFirst(6))) else {
        return check(false, "set=1 request of the device refused")
    }
    var fresh = WireGuardConfiguration()
    check((try? UAPI.apply(replay, to: &fresh)) != nil && fresh == device, "set=1 request rebuilt another device")
}

func wireGuardConfigSeeds() -> [[UInt8]] {
    [
        uapiDevice.text,
        "[Interface]\nfwmark = off # none\n[Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n"
            + "Endpoint = relay.example:51820\nPersistentKeepalive = off\nAllowedIPs = 0.0.0.0/0, ::/0\n"
    ].map { Array($0.utf8) }
}

func wireGuardUAPISeeds() -> [[UInt8]] {
    [
        String(try! UAPI.setRequest(for: uapiDevice).dropFirst(6)),
        "listen_port=4000\nfwmark=7\npublic_key=c53201039adba14be71f886da1d8dbe9eebded08cb111b75340078999aa9f038\n"
            + "update_only=true\nreplace_allowed_ips=true\nallowed_ip=198.18.20.0/24\nendpoint=[2001:db8::2]:443\n"
            + "persistent_keepalive_interval=25\nprotocol_version=1\n"
            + "public_key=4eb32f4a83f88d842563a448cc181bb2c42a637bf12363e2fb2ef594e5965d7d\nremove=true\n"
    ].map { Array($0.utf8) }
}
