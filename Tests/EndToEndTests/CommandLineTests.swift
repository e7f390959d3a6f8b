import Foundation
import Glibc
import Testing

extension EndToEnd {
    /// What a user sees when something is wrong: one line on stderr, a documented exit code, no trace.
    @Suite("Command-line behaviour")
    struct CommandLineTests {
        func run(_ binary: String, _ arguments: [String]) -> Lab.Shell {
            Lab.shell([Lab.binDirectory.appendingPathComponent(binary).path] + arguments, timeout: 20)
        }

        func expectCleanFailure(
            _ result: Lab.Shell, status: Int32, mentioning text: String, sourceLocation: SourceLocation = #_sourceLocation
        ) {
            #expect(result.status == status, "exit \(result.status): \(result.stderr)", sourceLocation: sourceLocation)
            #expect(result.stderr.contains(text), "stderr lacks '\(text)': \(result.stderr)", sourceLocation: sourceLocation)
            for trace in ["Fatal error", "Stack dump", "Current stack trace", "backtrace"] {
                #expect(!result.stderr.contains(trace), "stack trace printed: \(result.stderr)", sourceLocation: sourceLocation)
            }
        }

        @Test(arguments: ["udptun-client", "udptun-relay", "udptun-sink"])
        func helpHasExamplesAndExitCodes(binary: String) {
            let result = run(binary, ["--help"])
            #expect(result.status == 0)
            #expect(result.stdout.contains("EXAMPLES"))
            #expect(result.stdout.contains("EXIT STATUS"))
            #expect(result.stdout.contains("--json"))
        }

        /// Paragraphs are one source line each and wrapped by ArgumentParser, so nothing comes out
        /// ragged or over the width of an 80-column terminal.
        @Test(arguments: ["udptun-client", "udptun-relay", "udptun-sink"])
        func helpFitsEightyColumns(binary: String) {
            let result = Lab.shell(
                [Lab.binDirectory.appendingPathComponent(binary).path, "--help"],
                environment: ["COLUMNS": "80"], timeout: 20)
            #expect(result.status == 0)
            let long = result.stdout.split(separator: "\n").filter { $0.count > 80 }
            #expect(long.isEmpty, "lines over 80 columns: \(long)")
            // A paragraph hard-wrapped in the source comes out as a long line, then a stub of a few words.
            let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            for (line, next) in zip(lines, lines.dropFirst()) where line.count > 70 && !line.hasPrefix(" ") {
                #expect(next.isEmpty || next.hasPrefix(" ") || next.count > 20 || next.hasSuffix("."), "ragged: '\(line)' / '\(next)'")
            }
        }

        /// The measuring tools' verdicts are arithmetic on what they measured; these check that
        /// arithmetic on made-up figures and traces, without measuring anything: the benchmark's
        /// medians and issue 13's targets, and the wake-up timeline's reading of perf's output.
        @Test(
            "the measuring tools judge and read figures as documented",
            arguments: ["bench-figures.py", "wake-timeline-check.py"])
        func measuringToolArithmetic(script: String) {
            let path = Lab.packageRoot.appendingPathComponent("Tests/scripts/\(script)").path
            let result = Lab.shell(["/usr/bin/python3", path], timeout: 60)
            #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
            #expect(result.stdout.hasSuffix(": ok\n"), "\(result.stdout)")
        }

        @Test("--version comes from one place: the three programs print the same x.y.z")
        func versionFromOnePlace() {
            let versions = ["udptun-client", "udptun-relay", "udptun-sink"].map { binary in
                let result = run(binary, ["--version"])
                #expect(result.status == 0, "\(binary): \(result.stderr)")
                return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            #expect(Set(versions).count == 1, "\(versions)")
            #expect(
                versions[0].split(separator: ".").count == 3 && versions[0].split(separator: ".").allSatisfy { Int($0) != nil },
                "\(versions[0])")
        }

        @Test(arguments: ["udptun-client", "udptun-relay", "udptun-sink"])
        func completionScripts(binary: String) {
            for shell in ["bash", "zsh", "fish"] {
                let result = run(binary, ["--generate-completion-script", shell])
                #expect(
                    result.status == 0 && result.stdout.contains(binary) && result.stdout.contains("json"),
                    "\(binary) \(shell): \(result.stderr)")
            }
        }

        @Test func gtpuUsageErrorsExit64() {
            expectCleanFailure(run("udptun-client", ["--relay", "198.18.1.2", "--gtpu"]), status: 64, mentioning: "--teid")
            expectCleanFailure(run("udptun-client", ["--relay", "198.18.1.2", "--gtpu", "--teid", "0"]), status: 64, mentioning: "--teid")
            expectCleanFailure(
                run("udptun-client", ["--relay", "198.18.1.2", "--gtpu", "--teid", "0x1", "--qfi", "64"]), status: 64,
                mentioning: "--qfi")
            expectCleanFailure(run("udptun-client", ["--relay", "198.18.1.2", "--teid", "7"]), status: 64, mentioning: "need --gtpu")
            expectCleanFailure(
                run("udptun-client", ["--relay", "198.18.1.2", "--gtpu", "--teid", "7", "--key-file", "/nonexistent"]),
                status: 64, mentioning: "cannot be combined")
            expectCleanFailure(run("udptun-relay", ["--allow", "any", "--gtpu"]), status: 64, mentioning: "--session")
            expectCleanFailure(run("udptun-relay", ["--allow", "any", "--gtpu", "--session", "0x100"]), status: 64, mentioning: "--session")
            expectCleanFailure(
                run("udptun-relay", ["--allow", "any", "--gtpu", "--session", "1=198.19.0.1", "--session", "1=198.19.0.2"]),
                status: 64, mentioning: "given twice")
            expectCleanFailure(
                run("udptun-relay", ["--allow", "any", "--gtpu", "--session", "1=198.19.0.1", "--client-key", "k=198.19.0.1"]),
                status: 64, mentioning: "cannot be combined")
        }

        @Test func usageErrorsExit64() {
            expectCleanFailure(run("udptun-relay", []), status: 64, mentioning: "--allow")
            expectCleanFailure(run("udptun-relay", ["--allow", "198.18.0.0/99"]), status: 64, mentioning: "198.18.0.0/99")
            expectCleanFailure(run("udptun-client", []), status: 64, mentioning: "--relay")
            expectCleanFailure(run("udptun-client", ["--relay", "198.18.1.2", "--mtu", "huge"]), status: 64, mentioning: "--mtu")
            expectCleanFailure(run("udptun-client", ["--relay", "198.18.1.2", "--size", "8"]), status: 64, mentioning: "--size")
            expectCleanFailure(run("udptun-sink", ["--listen", "127.0.0.1:99999"]), status: 64, mentioning: "malformed address")
            expectCleanFailure(run("udptun-sink", ["--interval", "-1"]), status: 64, mentioning: "--interval")
            expectCleanFailure(
                run("udptun-relay", ["--allow", "any", "--threads", "3"]), status: 64,
                mentioning: "'3' is invalid for '--threads <auto|1|2>'")
            expectCleanFailure(run("udptun-client", ["--relay", "198.18.1.2", "--busy-poll", "-5"]), status: 64, mentioning: "--busy-poll")
            expectCleanFailure(run("udptun-relay", ["--allow", "any", "--queues", "0"]), status: 64, mentioning: "--queues must be 1 to 64")
            expectCleanFailure(
                run("udptun-client", ["--relay", "198.18.1.2", "--queues", "65"]), status: 64, mentioning: "--queues must be 1 to 64")
            expectCleanFailure(
                run("udptun-relay", ["--allow", "any", "--threads", "1", "--queues", "1", "--cpu", "0,1"]), status: 64,
                mentioning: "names 2 CPUs for 1 data-plane thread")
            expectCleanFailure(
                run("udptun-relay", ["--allow", "any", "--cpu", "1023"]), status: 64,
                mentioning: "CPU 1023 is not available to this process")
            expectCleanFailure(
                run("udptun-relay", ["--allow", "any", "--cpu", "2-1"]), status: 64, mentioning: "'2-1' is invalid for '--cpu <LIST>'")
            expectCleanFailure(
                run("udptun-client", ["--relay", "198.18.1.2", "--threads", "1", "--cpu", "0,1"]), status: 64,
                mentioning: "--cpu 0-1 names 2 CPUs for 1 data-plane thread")
        }

        @Test func keyFileProblemsAreExplained() throws {
            expectCleanFailure(
                run("udptun-client", ["--relay", "198.18.1.2", "--encrypt"]), status: 64, mentioning: "--encrypt needs --key-file")
            expectCleanFailure(
                run("udptun-client", ["--relay", "198.18.1.2", "--cipher", "aes-256-gcm"]), status: 64,
                mentioning: "--cipher needs --encrypt")
            expectCleanFailure(
                run("udptun-relay", ["--allow", "any", "--encrypt", "--cipher", "des"]), status: 64,
                mentioning: "'des' is invalid for '--cipher <NAME>'")
            expectCleanFailure(
                run("udptun-relay", ["--allow", "any", "--key-file", "/nonexistent/udptun.key", "--listen", "127.0.0.1:1"]),
                status: 78, mentioning: "cannot read key file /nonexistent/udptun.key")
            let generated = run("udptun-relay", ["--genkey"])
            #expect(generated.status == 0)
            #expect(generated.stdout.trimmingCharacters(in: .whitespacesAndNewlines).count == 44)
            expectCleanFailure(
                run("udptun-relay", ["--allow", "any", "--encrypt"]), status: 64,
                mentioning: "--encrypt needs --key-file or --client-key")
            expectCleanFailure(
                run("udptun-relay", ["--allow", "any", "--client-key", "alice.key"]), status: 64,
                mentioning: "--client-key 'alice.key' is not PATH=INNER_CIDR")
            let key = FileManager.default.temporaryDirectory.appendingPathComponent("udptun-cli-\(UUID()).key")
            try Data(generated.stdout.utf8).write(to: key)
            defer { try? FileManager.default.removeItem(at: key) }
            chmod(key.path, 0o600)
            expectCleanFailure(
                run(
                    "udptun-relay",
                    [
                        "--allow", "any", "--key-file", key.path, "--client-key", "\(key.path)=198.19.0.1/32",
                        "--listen", "127.0.0.1:1"
                    ]), status: 78, mentioning: "key file \(key.path) is given twice")
        }

        @Test func metricsAndKeepaliveUsage() throws {
            expectCleanFailure(run("udptun-sink", ["--metrics", "nonsense:port"]), status: 64, mentioning: "--metrics 'nonsense:port'")
            expectCleanFailure(run("udptun-sink", ["--metrics", "127.0.0.1"]), status: 64, mentioning: "--metrics")
            expectCleanFailure(
                run("udptun-relay", ["--allow", "any", "--metrics-per-client"]), status: 64,
                mentioning: "--metrics-per-client needs --metrics")
            expectCleanFailure(run("udptun-client", ["--relay", "198.18.1.2", "--keepalive", "-1"]), status: 64, mentioning: "--keepalive")
            expectCleanFailure(
                run("udptun-client", ["--no-tunnel", "--generate", "127.0.0.1:9", "--keepalive", "5"]), status: 64,
                mentioning: "--keepalive needs the tunnel")
            // A metrics port someone holds: a one-line configuration error, before anything runs.
            let (first, ports) = try Self.sinkOnFreePorts { listen, metrics in
                (["--listen", "127.0.0.1:\(listen)", "--metrics", "127.0.0.1:\(metrics)"], "metrics at http://127.0.0.1:\(metrics)/metrics")
            }
            defer {
                first.stop()
                first.removeLogs()
            }
            // The second sink's own port is free too: were it taken between the kernel's choice and
            // the sink's bind, the sink would fail on it before the metrics port, so try another.
            var second = Lab.Shell(status: -1, stdout: "", stderr: "")
            for _ in 0..<5 {
                let listen = try Self.kernelChosenPort(stream: false)
                second = run("udptun-sink", ["--listen", "127.0.0.1:\(listen)", "--metrics", "127.0.0.1:\(ports.metrics)"])
                if !second.stderr.contains("address 127.0.0.1:\(listen) is already in use") { break }
            }
            expectCleanFailure(second, status: 78, mentioning: "cannot listen for metrics on 127.0.0.1:\(ports.metrics)")
        }

        @Test func unresolvableHostExits78() {
            expectCleanFailure(
                run("udptun-client", ["--no-tunnel", "--generate", "no-such-host.invalid:9", "--count", "1"]),
                status: 78, mentioning: "cannot resolve 'no-such-host.invalid'")
        }

        @Test func addressInUseExits78() throws {
            let (first, ports) = try Self.sinkOnFreePorts { listen, _ in (["--listen", "127.0.0.1:\(listen)"], "sink listening") }
            defer {
                first.stop()
                first.removeLogs()
            }
            expectCleanFailure(run("udptun-sink", ["--listen", "127.0.0.1:\(ports.listen)"]), status: 78, mentioning: "already in use")
        }

        /// A port on 127.0.0.1 the kernel chose as free just now (a socket bound to port 0, read back and
        /// closed): UDP, or TCP for `stream`. The programs refuse port 0, so they cannot be asked directly.
        static func kernelChosenPort(stream: Bool) throws -> Int {
            let descriptor = socket(AF_INET, Int32(stream ? SOCK_STREAM.rawValue : SOCK_DGRAM.rawValue), 0)
            guard descriptor >= 0 else { throw LabError("socket: errno \(errno)") }
            defer { close(descriptor) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = in_addr_t(0x7F00_0001).bigEndian
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let status = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                    bind(descriptor, pointer, length) == 0 ? getsockname(descriptor, pointer, &length) : -1
                }
            }
            guard status == 0 else { throw LabError("bind 127.0.0.1:0: errno \(errno)") }
            return Int(UInt16(bigEndian: address.sin_port))
        }

        /// Starts a sink on 127.0.0.1 with a UDP port and a TCP (metrics) port the kernel chose as free;
        /// `arguments` makes its options from them and names the log line that shows it started. Another
        /// process may take a port between the kernel's choice and the sink's bind: the sink then exits
        /// saying so, and it starts again on fresh ports (up to five times), so a collision does not fail
        /// the test.
        static func sinkOnFreePorts(_ arguments: (_ listen: Int, _ metrics: Int) -> (options: [String], started: String)) throws
            -> (sink: Spawned, ports: (listen: Int, metrics: Int))
        {
            for attempt in 1...5 {
                let ports = (listen: try kernelChosenPort(stream: false), metrics: try kernelChosenPort(stream: true))
                let (options, started) = arguments(ports.listen, ports.metrics)
                let sink = try Spawned(
                    arguments: [Lab.binDirectory.appendingPathComponent("udptun-sink").path, "--interval", "0"] + options,
                    logs: FileManager.default.temporaryDirectory.appendingPathComponent("udptun-sink-\(UUID())"))
                do {
                    try sink.waitForLog(started)
                    return (sink, ports)
                } catch {
                    sink.stop()
                    let collided = sink.stderr.contains("is already in use")
                    sink.removeLogs()
                    if !collided || attempt == 5 { throw error }
                }
            }
            fatalError("unreachable: the last attempt returns or throws")
        }

        @Test(.requiresRoot)
        func tunPermissionAndBusyExit78() throws {
            try Lab.with { lab in
                // An unprivileged user cannot create a TUN device (with /dev/net/tun as distributions ship
                // it, 0666, set up in a mount namespace of its own): the message says what to do.
                let denied = lab.run(
                    .a,
                    try lab.withTunNode(
                        mode: "666",
                        [
                            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            lab.binary("udptun-client"), "--relay", "\(Lab.addressB):8080", "--tun", "utnoperm0"
                        ]), timeout: 15)
                expectCleanFailure(denied, status: 78, mentioning: "no permission to open or create TUN device utnoperm0")
                // A single-queue TUN device takes one process.
                _ = try lab.relay()
                let busy = lab.run(.b, [lab.binary("udptun-relay"), "--listen", "\(Lab.addressB):8081", "--allow", "any"], timeout: 15)
                expectCleanFailure(busy, status: 78, mentioning: "TUN device tun2 is busy")
            }
        }
    }
}
