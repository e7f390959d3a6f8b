import Foundation
import Testing

extension EndToEnd {
    /// `--metrics` checked by the real thing: promtool accepts each program's exposition, and Debian's
    /// Prometheus server, scraping the trio during a generator run, holds the figures the programs
    /// report in their own final JSON.
    @Suite("Monitoring: Prometheus scrapes the trio", .serialized, .requiresRoot)
    struct MonitoringTests {
        static let payloads = 3000

        @Test("Prometheus's figures for relay, client and sink equal their final reports; promtool accepts every exposition")
        func prometheusScrapesTheTrio() throws {
            let tools = try PrometheusTools.extracted()
            try Lab.with { lab in
                let targets = ["relay": "\(Lab.addressB):9101", "client": "\(Lab.addressA):9102", "sink": "\(Lab.addressC):9103"]
                let relay = try lab.relay(["--allow", "\(Lab.addressA)/32", "--metrics", targets["relay"]!, "--metrics-per-client"])
                let sink = try lab.sink(["--metrics", targets["sink"]!])
                // Prometheus runs in B, which reaches A and C directly; it listens on B's loopback only.
                let config = try lab.file(
                    "prometheus.yml",
                    Array(
                        """
                        global:
                          scrape_interval: 1s
                          scrape_timeout: 900ms
                        scrape_configs:
                          - job_name: udptun
                            static_configs:
                              - targets: [\(targets.values.sorted().map { "'\($0)'" }.joined(separator: ", "))]
                        """.utf8))
                let server = try lab.spawn(
                    .b,
                    [
                        tools.prometheus, "--config.file=\(config.path)",
                        "--storage.tsdb.path=\(lab.directory.appendingPathComponent("tsdb").path)",
                        "--web.listen-address=127.0.0.1:9090"
                    ], name: "prometheus")
                try server.waitForLog("Server is ready to receive web requests")
                let client = try lab.client([
                    "--relay", "\(Lab.addressB):8080", "--metrics", targets["client"]!,
                    "--generate", "\(Lab.addressC):8080", "--count", "\(Self.payloads)", "--rate", "1000"
                ])
                try client.waitForLog("generator finished", timeout: 30)
                for _ in 0..<50 where sink.latestReceived < Self.payloads { Thread.sleep(forTimeInterval: 0.1) }
                // Traffic is over: let Prometheus scrape the final figures (two intervals, and it reports
                // every target up).
                Thread.sleep(forTimeInterval: 2.5)
                var sinkExposition = ""
                for (role, target) in targets {
                    let exposition = try Self.fetch(lab, "http://\(target)/metrics")
                    if role == "sink" { sinkExposition = exposition }
                    let file = try lab.file("\(role).prom", Array(exposition.utf8))
                    let check = lab.run(.b, [tools.promtool, "check", "metrics"], input: file)
                    #expect(check.status == 0, "promtool on the \(role)'s exposition: \(check.stdout)\(check.stderr)")
                    #expect(exposition.contains("udptun_build_info{role=\"\(role)\""))
                    if role != "sink" { #expect(exposition.contains("udptun_offload_enabled{role=\"\(role)\",feature=\"udp_gso\"} 1")) }
                }
                #expect(try Self.query(lab, "count(up == 1)") == 3, "Prometheus scrapes all three")
                let forwarded = try Self.query(lab, #"udptun_forwarded_packets_total{role="relay"}"#)
                let sent = try Self.query(lab, #"udptun_sent_datagrams_total{role="client"}"#)
                let received = try Self.query(lab, #"udptun_sink_payloads_total{role="sink"}"#)
                let perClient = try Self.query(lab, #"udptun_client_received_packets_total{client="\#(Lab.innerA)"}"#)
                #expect(client.stop() == 0)
                #expect(relay.stop() == 0)
                #expect(sink.stop() == 0)
                let relayReport = try #require(relay.report()), clientReport = try #require(client.report())
                let sinkReport = try #require(sink.report())
                #expect(sinkReport.int("received") == Self.payloads)
                #expect(
                    forwarded == Double(relayReport.int("forwarded")),
                    "relay forwarded: Prometheus \(forwarded), JSON \(relayReport.int("forwarded"))")
                #expect(sent == Double(clientReport.int("sent")), "client sent: Prometheus \(sent), JSON \(clientReport.int("sent"))")
                #expect(
                    received == Double(sinkReport.int("received")),
                    "sink received: Prometheus \(received), JSON \(sinkReport.int("received"))")
                let listed = relayReport["client_list"] as? [[String: Any]] ?? []
                #expect(
                    perClient == Double(listed.first?["from_client"] as? Int ?? -1), "per client: Prometheus \(perClient), JSON \(listed)")
                #expect(forwarded >= Double(Self.payloads))
                // One host, one clock: every payload's one-way latency is in the histogram, and the
                // final report's percentiles are in order.
                let latencyCount = sinkExposition.split(separator: "\n").first {
                    $0.hasPrefix(#"udptun_sink_latency_seconds_count{role="sink"} "#)
                }
                #expect(
                    latencyCount.flatMap { Double($0.split(separator: " ")[1]) } == Double(sinkReport.int("received")),
                    "latency count \(latencyCount ?? "missing") against \(sinkReport.int("received")) received")
                #expect(sinkReport["clock"] as? String == "shared")
                let percentiles = ["latency_p50_us", "latency_p90_us", "latency_p99_us", "latency_p999_us", "latency_max_us"].map {
                    (sinkReport[$0] as? NSNumber)?.doubleValue ?? -1
                }
                #expect(percentiles.allSatisfy { $0 >= 0 } && percentiles == percentiles.sorted(), "percentiles \(percentiles)")
                #expect(sinkReport.int("latency_payloads") == Self.payloads)
                #expect(sinkReport["jitter_us"] is NSNumber)
            }
        }

        /// The body at `url`, fetched from inside B.
        static func fetch(_ lab: Lab, _ url: String) throws -> String {
            let result = lab.run(.b, ["curl", "-sf", "--max-time", "5", url], timeout: 10)
            guard result.status == 0 else { throw LabError("GET \(url) failed (\(result.status)): \(result.stderr)") }
            return result.stdout
        }

        /// The single value of an instant PromQL query, through Prometheus's HTTP API.
        static func query(_ lab: Lab, _ promQL: String) throws -> Double {
            let encoded = promQL.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? promQL
            let body = try fetch(lab, "http://127.0.0.1:9090/api/v1/query?query=\(encoded)")
            guard let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
                let data = object["data"] as? [String: Any], let results = data["result"] as? [[String: Any]],
                results.count == 1, let value = results[0]["value"] as? [Any], value.count == 2,
                let text = value[1] as? String, let number = Double(text)
            else {
                throw LabError("Prometheus query \(promQL) gave no single value: \(body)")
            }
            return number
        }
    }
}

/// Debian's prometheus and promtool, unpacked from the package into a cache folder (apt-get
/// download, dpkg-deb -x) rather than installed: installing would start a Prometheus service on
/// the machine running the tests.
enum PrometheusTools {
    static let cache = URL(fileURLWithPath: "/var/tmp/udptun-test-tools/prometheus")

    static func extracted() throws -> (prometheus: String, promtool: String) {
        try Lab.ensureCommand("curl", package: "curl")
        let prometheus = cache.appendingPathComponent("usr/bin/prometheus").path
        let promtool = cache.appendingPathComponent("usr/bin/promtool").path
        if !FileManager.default.isExecutableFile(atPath: prometheus) {
            let script = """
                set -e
                mkdir -p "$0" && cd "$0" && rm -f prometheus_*.deb
                apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }
                dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb
                """
            let unpack = Lab.shell(["sh", "-c", script, cache.path], timeout: 300)
            guard unpack.status == 0, FileManager.default.isExecutableFile(atPath: prometheus) else {
                throw LabError("cannot unpack Debian's prometheus into \(cache.path): \(unpack.stderr)")
            }
        }
        return (prometheus, promtool)
    }
}
