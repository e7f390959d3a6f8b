import Foundation
import Glibc
import Testing

#if canImport(FoundationXML)
    import FoundationXML
#endif

extension EndToEnd {
    /// `deploy/bench.py --plot` (issue 28's pictures): the SVG of a run is well-formed, has a series
    /// for every row and test that was run, and none for anything else.
    @Suite("Benchmark plot", .requiresRoot)
    struct BenchPlotTests {
        static let bench = Lab.packageRoot.appendingPathComponent("deploy/bench.py").path

        func ensureTools() throws {
            try Lab.ensureCommand("iperf3", package: "iperf3")
            try Lab.ensurePythonModule("matplotlib", package: "python3-matplotlib")
        }

        /// A scratch directory for one test's files, removed when `body` ends.
        func withScratch<T>(_ body: (URL) throws -> T) throws -> T {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("udptun-bench-plot-\(UUID())")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            return try body(directory)
        }

        /// The bench's labs (deploy/lab.sh namespaces named udptunbench<pid>-a/b/c) present now.
        func benchNamespaces() -> Set<String> {
            let list = Lab.shell(["ip", "netns", "list"], timeout: 10).stdout
            return Set(
                list.split(separator: "\n").map { String($0.split(separator: " ").first ?? "") }.filter { $0.hasPrefix("udptunbench") })
        }

        func runBench(_ arguments: [String], timeout: Double) -> Lab.Shell {
            // Debian's python (with python3-matplotlib), and the debug programs this test run built.
            Lab.shell(
                ["/usr/bin/python3", Self.bench, "--bin", Lab.binDirectory.path, "--allocation-packets", "0"] + arguments,
                timeout: timeout)
        }

        @Test("a short bench run draws a valid SVG: a series per row and test run, none for the rest; its lab is gone")
        func shortRunDrawsItsSeries() throws {
            try ensureTools()
            try withScratch { directory in
                let json = directory.appendingPathComponent("results.json")
                let svg = directory.appendingPathComponent("bench.svg")
                let before = benchNamespaces()
                let result = runBench(
                    [
                        "--rows", "direct,udptun", "--tests", "tcp1,udp64,ping", "--tcp-seconds", "1", "--seconds", "1", "--pings",
                        "20", "--json", json.path, "--plot", svg.path
                    ], timeout: 120)
                #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
                #expect(benchNamespaces().subtracting(before).isEmpty, "the bench left namespaces: \(benchNamespaces())")
                let drawn = try SVGContents(svg)
                var expected: Set<String> = []
                for row in ["direct", "udptun"] {
                    for metric in ["tcp1", "udp64-delivered", "udp64-arrived", "ping-avg", "ping-p99"] {
                        expected.insert("series-\(metric)-\(row)")
                    }
                }
                #expect(drawn.seriesIDs == expected, "drawn \(drawn.seriesIDs.sorted()), expected \(expected.sorted())")
                #expect(drawn.text.contains("udptun") && drawn.text.contains("direct, routed through B"))
                #expect(!drawn.text.contains("copy-only ceiling"), "a ceiling drawn without its row")
            }
        }

        @Test("a plot that cannot be written fails the run with one line, after the results and the lab's removal")
        func unwritablePlotFailsCleanly() throws {
            try ensureTools()
            try withScratch { directory in
                let json = directory.appendingPathComponent("results.json")
                let before = benchNamespaces()
                let result = runBench(
                    [
                        "--rows", "direct", "--tests", "ping", "--pings", "5", "--json", json.path, "--plot",
                        directory.appendingPathComponent("missing/bench.svg").path
                    ], timeout: 60)
                #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
                #expect(result.stderr.contains("bench: cannot draw"), "\(result.stderr)")
                #expect(!result.stderr.contains("Traceback"), "\(result.stderr)")
                #expect(result.stdout.contains("| direct, routed through B |"), "the table is printed either way: \(result.stdout)")
                #expect(FileManager.default.fileExists(atPath: json.path))
                #expect(benchNamespaces().subtracting(before).isEmpty, "the bench left namespaces: \(benchNamespaces())")
            }
        }

        /// A hand-made results file: the ceiling marked as a bound (dashed lines for TCP, none for UDP),
        /// figures a row lacks and a row with none at all left out, and percentiles beyond avg and p99 drawn.
        @Test("--plot-only draws a results file: the ceiling marked as a bound, missing figures absent")
        func plotOnlyMarksTheCeiling() throws {
            try ensureTools()
            try withScratch { directory in
                let json = directory.appendingPathComponent("results.json")
                let svg = directory.appendingPathComponent("bench.svg")
                try Data(Self.handMadeResults.utf8).write(to: json)
                let result = Lab.shell(["/usr/bin/python3", Self.bench, "--plot-only", json.path, "--plot", svg.path], timeout: 60)
                #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
                #expect(result.stdout.isEmpty, "measured or printed a table: \(result.stdout)")
                let drawn = try SVGContents(svg)
                let expected: Set<String> = [
                    "series-tcp1-direct", "series-tcp4-direct", "series-udp64-delivered-direct", "series-udp64-arrived-direct",
                    "series-udp1400-delivered-direct", "series-ping-avg-direct", "series-ping-p99-direct",
                    "series-ping1ms-avg-direct", "series-ping1ms-p99-direct",
                    "series-tcp1-ceiling", "series-tcp4-ceiling", "series-udp64-delivered-ceiling", "series-udp64-arrived-ceiling",
                    "series-ping-avg-ceiling", "series-ping-p99-ceiling", "bound-tcp1", "bound-tcp4",
                    "series-tcp1-udptun-gtpu", "series-ping-p50-udptun-gtpu", "series-ping-avg-udptun-gtpu",
                    "series-ping-p99-udptun-gtpu", "series-ping-p999-udptun-gtpu"
                ]
                #expect(drawn.seriesIDs == expected, "drawn \(drawn.seriesIDs.sorted()), expected \(expected.sorted())")
                #expect(drawn.text.contains("copy-only ceiling"), "the ceiling is not named")
                #expect(drawn.text.contains("p99.9"), "the extra percentile is not in the legend")
                #expect(!drawn.text.contains("AES-256-GCM"), "a row without figures was drawn")
                #expect(drawn.text.contains("medians of 3 rounds"))
            }
        }

        static let handMadeResults = """
            {"date": "2026-12-08 01:00:00 UTC", "kernel": "6.1.0-test", "cpus": 2, "seconds": 60, "rounds_run": 3,
             "rows": [
              {"row": "direct", "label": "direct, routed through B", "tcp1": {"gbps": 18.5, "cpu_s_per_gb": null},
               "tcp4": {"gbps": 31.1}, "udp64": {"delivered_kpps": 200.0, "loss_percent": 1.0, "arrived_kpps": 210.0},
               "udp64-4mb": {"delivered_kpps": null, "loss_percent": null, "arrived_kpps": null},
               "udp1400": {"delivered_kpps": 150.0, "loss_percent": 0.5, "arrived_kpps": null},
               "ping": {"avg_ms": 0.058, "p99_ms": 0.08, "replies": 200}, "ping1ms": {"avg_ms": 0.008, "p99_ms": 0.02},
               "rss_mb": null},
              {"row": "ceiling", "label": "copy-only TUN↔UDP ceiling (not a tunnel)", "tcp1": {"gbps": 12.3},
               "tcp4": {"gbps": 13.0}, "udp64": {"delivered_kpps": 66.0, "loss_percent": 2.0, "arrived_kpps": 97.0},
               "udp64-4mb": {"delivered_kpps": null, "loss_percent": null, "arrived_kpps": null},
               "udp1400": {"delivered_kpps": null, "loss_percent": null, "arrived_kpps": null},
               "ping": {"avg_ms": 0.2, "p99_ms": 0.3}, "ping1ms": {"avg_ms": null, "p99_ms": null}, "rss_mb": 1.0},
              {"row": "udptun-gtpu", "label": "udptun, GTP-U (RAN node → UPF)", "tcp1": {"gbps": 8.0},
               "tcp4": {"gbps": null}, "udp64": {"delivered_kpps": null, "loss_percent": null, "arrived_kpps": null},
               "udp64-4mb": {"delivered_kpps": null, "loss_percent": null, "arrived_kpps": null},
               "udp1400": {"delivered_kpps": null, "loss_percent": null, "arrived_kpps": null},
               "ping": {"avg_ms": 0.25, "p50_ms": 0.24, "p99_ms": 0.4, "p999_ms": 0.9},
               "ping1ms": {"avg_ms": null, "p99_ms": null}, "rss_mb": 14.0},
              {"row": "udptun-aes", "label": "udptun, AES-256-GCM", "tcp1": {"gbps": null}, "tcp4": {"gbps": null},
               "udp64": {"delivered_kpps": null, "loss_percent": null, "arrived_kpps": null},
               "udp64-4mb": {"delivered_kpps": null, "loss_percent": null, "arrived_kpps": null},
               "udp1400": {"delivered_kpps": null, "loss_percent": null, "arrived_kpps": null},
               "ping": {"avg_ms": null, "p99_ms": null}, "ping1ms": {"avg_ms": null, "p99_ms": null}, "rss_mb": null}
             ]}
            """
    }
}

/// What a test needs from an SVG file: that it parses as XML with an `svg` root in the SVG namespace,
/// the ids of its drawn series (`series-…`, `bound-…`) and all its text.
struct SVGContents {
    let seriesIDs: Set<String>
    let text: String

    init(_ url: URL) throws {
        let reader = SVGReader()
        let parser = try #require(XMLParser(contentsOf: url), "cannot open \(url.path)")
        parser.delegate = reader
        let parsed = parser.parse()
        #expect(parsed, "not well-formed XML: \(parser.parserError.map { "\($0)" } ?? "?")")
        #expect(reader.root == "svg", "root element \(reader.root ?? "none")")
        #expect(reader.namespace == "http://www.w3.org/2000/svg", "namespace \(reader.namespace ?? "none")")
        seriesIDs = Set(reader.ids.filter { $0.hasPrefix("series-") || $0.hasPrefix("bound-") })
        #expect(seriesIDs.count == reader.ids.filter { $0.hasPrefix("series-") || $0.hasPrefix("bound-") }.count, "an id used twice")
        text = reader.text
    }
}

private final class SVGReader: NSObject, XMLParserDelegate {
    var root: String?
    var namespace: String?
    var ids: [String] = []
    var text = ""

    func parser(
        _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
        attributes: [String: String] = [:]
    ) {
        if root == nil {
            root = elementName
            namespace = attributes["xmlns"]
        }
        if let id = attributes["id"] { ids.append(id) }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }
}
