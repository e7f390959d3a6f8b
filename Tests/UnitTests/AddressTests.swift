import Testing

@testable import KernelIO
@testable import WireFormat

@Suite("Addresses and prefixes")
struct AddressTests {
    @Test(arguments: [
        ("198.18.0.1", "198.18.0.1"), ("0.0.0.0", "0.0.0.0"), ("::", "::"), ("::1", "::1"),
        ("2001:db8::1", "2001:db8::1"), ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("fe80::1:0:0:0:1", "fe80:0:0:1::1"), ("1:0:0:2:0:0:0:3", "1:0:0:2::3"), ("::ffff:198.18.0.1", "::ffff:c612:1")
    ])
    func parsesAndFormats(text: String, formatted: String) throws {
        let address = try #require(IPAddress(text))
        #expect(address.description == formatted)
        #expect(IPAddress(address.description) == address)
    }

    @Test(arguments: [
        "", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-4", "1..2.3", ":::", "1::2::3", "12345::", "g::1", "1:2:3:4:5:6:7:8:9", " 1.2.3.4",
        "1.2.3.4 "
    ])
    func rejectsMalformed(text: String) {
        #expect(IPAddress(text) == nil)
    }

    @Test func unmapsIPv4MappedAddresses() {
        #expect(IPAddress("::ffff:198.18.0.1")?.unmappingIPv4 == IPAddress("198.18.0.1"))
        #expect(IPAddress("198.18.0.1")?.mappedToIPv6 == IPAddress("::ffff:198.18.0.1"))
    }

    @Test func prefixesContainWhatTheyShould() throws {
        let lab = try #require(IPPrefix("198.18.0.0/15"))
        #expect(lab.contains(.v4(0xC612_0101)))
        #expect(lab.contains(try #require(IPAddress("198.19.255.255"))))
        #expect(!lab.contains(try #require(IPAddress("198.20.0.0"))))
        #expect(lab.contains(try #require(IPAddress("::ffff:198.18.1.1"))))
        #expect(try #require(IPPrefix("198.18.1.7/24")).description == "198.18.1.0/24")
        #expect(try #require(IPPrefix("198.18.1.1")).length == 32)
        #expect(try #require(IPPrefix("0.0.0.0/0")).contains(.v4(1)))
        let v6 = try #require(IPPrefix("2001:db8::/32"))
        #expect(v6.contains(try #require(IPAddress("2001:db8:ffff::1"))))
        #expect(!v6.contains(try #require(IPAddress("2001:db9::1"))))
        #expect(!v6.contains(.v4(0)))
        #expect(try #require(IPPrefix("2001:db8::1/127")).contains(try #require(IPAddress("2001:db8::"))))
        // Found by the fuzzer: an IPv6 prefix written in mapped form contains its own address.
        let mapped = try #require(IPPrefix("::ffff:198.18.0.1"))
        #expect(mapped.contains(mapped.address))
        #expect(try #require(IPPrefix("::ffff:0:0/96")).contains(try #require(IPAddress("::ffff:127.0.0.1"))))
        for text in ["198.18.0.0/33", "198.18.0.0/-1", "x/8", "2001:db8::/129", "1.2.3.4/", "1.2.3.4/8/9"] {
            #expect(IPPrefix(text) == nil, "\(text)")
        }
    }

    @Test func splitsHostAndPort() throws {
        #expect(try AddressResolver.split("198.18.1.2:9000", defaultPort: 8080) == ("198.18.1.2", 9000))
        #expect(try AddressResolver.split("198.18.1.2", defaultPort: 8080) == ("198.18.1.2", 8080))
        #expect(try AddressResolver.split("[::1]:53", defaultPort: nil) == ("::1", 53))
        #expect(try AddressResolver.split("[2001:db8::1]", defaultPort: 8080) == ("2001:db8::1", 8080))
        #expect(try AddressResolver.split("2001:db8::1", defaultPort: 8080) == ("2001:db8::1", 8080))
        #expect(try AddressResolver.split(":8081", defaultPort: nil) == ("", 8081))
        #expect(try AddressResolver.split("8081", defaultPort: nil) == ("", 8081))
        #expect(try AddressResolver.split("relay.example:7000", defaultPort: nil) == ("relay.example", 7000))
        for bad in ["host:0", "host:65536", "host:http", "[::1", "[::1]x", "host"] {
            #expect(throws: AddressResolver.Failure.self, "\(bad)") { try AddressResolver.split(bad, defaultPort: nil) }
        }
    }

    @Test func resolvesLiteralsAndNames() throws {
        #expect(try AddressResolver.resolve("198.18.1.2", defaultPort: 8080) == SocketAddress(ip: .v4(0xC612_0102), port: 8080))
        #expect(try AddressResolver.resolve(":9", defaultPort: nil).ip == .v4(0))
        #expect(try AddressResolver.resolve("localhost:9", defaultPort: nil).ip == .v4(0x7f00_0001))
        #expect(throws: AddressResolver.Failure.self) { try AddressResolver.resolve("no-such-host.invalid:9", defaultPort: nil) }
        #expect(throws: AddressResolver.Failure.self) { try AddressResolver.resolve("bad host!:9", defaultPort: nil) }
        #expect(SocketAddress(ip: .v6(0, 1), port: 80).description == "[::1]:80")
    }
}
