import Foundation
import Testing

extension EndToEnd {
    /// `udptun-sink --reflect` answering `udptun-client --measure-rtt` through the tunnel: round trips
    /// on the client's clock alone, answers only where --allow lets them go, and the rate limit.
    @Suite("Round trips through the tunnel (--reflect, --measure-rtt)", .serialized, .requiresRoot)
    struct RoundTripTests {
        enum Mode: String, CaseIterable, CustomTestStringConvertible {
            case raw, gtpu, authenticated
            var testDescription: String { rawValue }
        }

        /// The relay's and the client's flags for `mode` (the key file made in `lab` where needed).
        static func tunnelFlags(_ mode: Mode, _ lab: Lab) throws -> (relay: [String], client: [String]) {
            switch mode {
            case .raw:
                return (["--allow", "\(Lab.addressA)/32"], ["--relay", "\(Lab.addressB):8080"])
            case .gtpu:
                return (["--allow", "\(Lab.addressA)/32"] + GTPUEndToEndTests.session, GTPUEndToEndTests.ran)
            case .authenticated:
                let key = try lab.file("key", Array((Lab.shell([lab.binary("udptun-relay"), "--genkey"], timeout: 10).stdout).utf8))
                chmod(key.path, 0o600)
                return (
                    ["--allow", "\(Lab.addressA)/32", "--key-file", key.path, "--encrypt"],
                    ["--relay", "\(Lab.addressB):8080", "--key-file", key.path, "--encrypt"]
                )
            }
        }

        static func generator(count: Int, rate: Int) -> [String] {
            ["--generate", "\(Lab.addressC):8080", "--count", "\(count)", "--rate", "\(rate)", "--measure-rtt", "--exit-when-done"]
        }

        @Test("the flags' usage errors exit 64 with one line naming the flag")
        func usageErrors() {
            let cases: [(binary: String, arguments: [String], mentioning: String)] = [
                ("udptun-sink", ["--allow", "198.19.0.0/24"], "--reflect"),
                ("udptun-sink", ["--reflect-rate", "500"], "--reflect"),
                ("udptun-sink", ["--reflect", "--reflect-rate", "0"], "--reflect-rate"),
                ("udptun-sink", ["--reflect", "--allow", "198.19.0.0/99"], "198.19.0.0/99"),
                ("udptun-client", ["--relay", Lab.addressB, "--measure-rtt"], "--generate")
            ]
            for (binary, arguments, text) in cases {
                let result = Lab.shell([Lab.binDirectory.appendingPathComponent(binary).path] + arguments, timeout: 20)
                #expect(result.status == 64, "\(binary) \(arguments): exit \(result.status): \(result.stderr)")
                #expect(result.stderr.contains(text) && !result.stderr.contains("Fatal error"), "\(result.stderr)")
            }
        }

        @Test("every probe answered through the tunnel, percentiles ordered, no loss either way", arguments: Mode.allCases)
        func roundTrips(mode: Mode) throws {
            try Lab.with { lab in
                let flags = try Self.tunnelFlags(mode, lab)
                let relay = try lab.relay(flags.relay)
                let sink = try lab.sink(["--reflect", "--allow", "198.19.0.0/24", "--reflect-rate", "5000"])
                let client = try lab.client(flags.client + Self.generator(count: 1000, rate: 1000))
                #expect(client.wait(timeout: 20) == 0, "client: \(client.stderr)")
                #expect(sink.stop() == 0)
                _ = relay.stop()
                let report = try #require(client.report(), "client printed no final report: \(client.stdout)\(client.stderr)")
                let sinkReport = try #require(sink.report(), "sink printed no final report: \(sink.stdout)")
                #expect(sinkReport.int("received") == 1000 && sinkReport.int("reflected") == 1000, "\(sinkReport)")
                #expect(sinkReport.int("reflect_refused_allow") == 0 && sinkReport.int("reflect_refused_rate") == 0)
                #expect(report.int("generated") == 1000)
                #expect(report.int("rtt_answers") == 1000, "\(report)")
                #expect(report.int("rtt_loss_forward") == 0 && report.int("rtt_loss_back") == 0 && report.int("rtt_refused") == 0)
                #expect(report.int("rtt_corrupt") == 0 && report.int("rtt_duplicates") == 0)
                let (minimum, p50, p90, p99, p999, maximum) = (
                    report.int("rtt_min_us"), report.int("rtt_p50_us"), report.int("rtt_p90_us"), report.int("rtt_p99_us"),
                    report.int("rtt_p999_us"), report.int("rtt_max_us")
                )
                #expect(minimum > 0 && minimum <= p50 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= maximum, "\(report)")
                // A lab round trip through two namespaces' tunnel is well under a second.
                #expect(maximum < 1_000_000, "\(report)")
            }
        }

        @Test("no answers to a source outside the sink's --allow, every refusal counted")
        func onlyAllowedSources() throws {
            try Lab.with { lab in
                let relay = try lab.relay()
                let sink = try lab.sink(["--reflect", "--allow", "198.18.9.0/24", "--allow", "2001:db8:9::/48"])
                let client = try lab.client(["--relay", "\(Lab.addressB):8080"] + Self.generator(count: 300, rate: 1000))
                #expect(client.wait(timeout: 20) == 0, "client: \(client.stderr)")
                #expect(sink.stop() == 0)
                _ = relay.stop()
                let report = try #require(client.report(), "client: \(client.stdout)\(client.stderr)")
                let sinkReport = try #require(sink.report(), "sink: \(sink.stdout)")
                #expect(sinkReport.int("received") == 300)
                #expect(sinkReport.int("reflected") == 0 && sinkReport.int("reflect_refused_allow") == 300, "\(sinkReport)")
                #expect(report.int("rtt_answers") == 0, "\(report)")
                #expect(report["rtt_p50_us"] is NSNull && report["rtt_loss_forward"] is NSNull, "\(report)")
            }
        }

        @Test("at ten times the sink's --reflect-rate, answers stay within rate × time + burst, and the client tells refusals from loss")
        func rateLimitHolds() throws {
            try Lab.with { lab in
                let relay = try lab.relay()
                let sink = try lab.sink(["--reflect", "--reflect-rate", "200"])
                let started = Date()
                let client = try lab.client(["--relay", "\(Lab.addressB):8080"] + Self.generator(count: 4000, rate: 2000))
                #expect(client.wait(timeout: 20) == 0, "client: \(client.stderr)")
                let seconds = Date().timeIntervalSince(started)
                #expect(sink.stop() == 0)
                _ = relay.stop()
                let report = try #require(client.report(), "client: \(client.stdout)\(client.stderr)")
                let sinkReport = try #require(sink.report(), "sink: \(sink.stdout)")
                let reflected = sinkReport.int("reflected")
                // Burst: 32 (a tenth of a second's worth is less). The probes arrive within `seconds`.
                #expect(reflected > 0 && Double(reflected) <= 200 * seconds + 32, "\(reflected) answers in \(seconds) s")
                #expect(reflected + sinkReport.int("reflect_refused_rate") == sinkReport.int("received"), "\(sinkReport)")
                #expect(report.int("rtt_answers") == reflected, "\(report)")
                // As of the last answer, the refusals the client tells are the sink's (up to the probes after it).
                let refused = report.int("rtt_refused")
                #expect(refused > 0 && refused <= sinkReport.int("reflect_refused_rate"), "\(report)")
                #expect(report.int("rtt_loss_forward") == 0 && report.int("rtt_loss_back") == 0, "\(report)")
            }
        }
    }
}
