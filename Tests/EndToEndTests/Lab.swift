import CLinux
import Foundation
import Glibc
import KernelIO
import Synchronization
import TestSupport
import Testing

/// Every end-to-end suite nests in here so they run one at a time: parallel labs would compete for the
/// two cores and make loss-free assertions flaky.
@Suite(.serialized) enum EndToEnd {}

extension Trait where Self == ConditionTrait {
    /// The end-to-end tests' gate: labs make network namespaces and TUN devices, which needs root.
    static var requiresRoot: Self {
        .enabled(if: Lab.isRoot, "needs root for network namespaces and TUN devices (run the test command as root)")
    }
}

/// One lab of three namespaces (deploy/lab.sh) with a unique prefix, plus the processes a test starts
/// in it. `tearDown` stops those processes (by pid, only ours) and deletes the namespaces; tests get a
/// lab only through `Lab.with`, which calls it on every exit path.
final class Lab: @unchecked Sendable {
    enum Node: String { case a, b, c }

    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let binDirectory: URL = {
        if let override = ProcessInfo.processInfo.environment["UDPTUN_BIN"] { return URL(fileURLWithPath: override) }
        return packageRoot.appendingPathComponent(".build/debug")
    }()
    static var isRoot: Bool { getuid() == 0 }
    private static let counter = Atomic<Int>(0)
    static let prefixStem = "ute2e"

    static let addressA = "198.18.1.1"
    static let addressB = "198.18.1.2"
    static let addressC = "198.18.2.2"
    static let innerA = "198.19.0.1"

    let prefix: String
    let directory: URL
    private var processes: [Spawned] = []
    /// Namespaces a test added beside A, B and C (`addNamespace`), deleted with the lab.
    private var extraNamespaces: [String] = []

    /// Runs `body` in a new lab and tears the lab down however `body` ends: it returns, throws, or a
    /// `#require` stops it. `tunQueues` above 1 makes tun1 and tun2 multi-queue devices (for `--queues`).
    static func with<T>(tunQueues: Int = 1, _ body: (Lab) throws -> T) throws -> T {
        let lab = try Lab(tunQueues: tunQueues)
        defer { lab.tearDown() }
        return try body(lab)
    }

    private init(tunQueues: Int) throws {
        Self.removeStaleLabs()
        let serial = Self.counter.add(1, ordering: .relaxed).newValue
        prefix = "\(Self.prefixStem)\(getpid())x\(serial)"
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("udptun-\(prefix)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for binary in ["udptun-client", "udptun-relay", "udptun-sink"] {
            let path = Self.binDirectory.appendingPathComponent(binary).path
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw LabError("\(path) is missing: run `swift build && swift test` (the README's test command)")
            }
        }
        let up = Self.shell(
            ["bash", Self.packageRoot.appendingPathComponent("deploy/lab.sh").path, "up"],
            environment: ["LAB_PREFIX": prefix, "TUN_QUEUES": "\(tunQueues)"], timeout: 60)
        guard up.status == 0 else {
            tearDown()
            throw LabError("lab.sh up failed (\(up.status)): \(up.stderr)")
        }
    }

    func namespace(_ node: Node) -> String { "\(prefix)-\(node.rawValue)" }

    func binary(_ name: String) -> String { Self.binDirectory.appendingPathComponent(name).path }

    /// Starts `command` inside `node`'s namespace, stdout and stderr captured to files.
    @discardableResult
    func spawn(_ node: Node, _ command: [String], name: String) throws -> Spawned {
        let spawned = try Spawned(
            arguments: ["ip", "netns", "exec", namespace(node)] + command,
            logs: directory.appendingPathComponent(name))
        processes.append(spawned)
        return spawned
    }

    func relay(_ arguments: [String] = ["--allow", "\(addressA)/32"], in node: Node = .b, name: String = "relay") throws -> Spawned {
        let relay = try spawn(node, [binary("udptun-relay"), "--json", "--interval", "0"] + arguments, name: name)
        try relay.waitForLog("relay listening")
        return relay
    }

    func sink(_ arguments: [String] = [], name: String = "sink") throws -> Spawned {
        let sink = try spawn(
            .c, [binary("udptun-sink"), "--json", "--interval", "0", "--listen", "\(Self.addressC):8080"] + arguments, name: name)
        try sink.waitForLog("sink listening")
        return sink
    }

    func client(_ arguments: [String], name: String = "client") throws -> Spawned {
        try spawn(.a, [binary("udptun-client"), "--json", "--interval", "0"] + arguments, name: name)
    }

    /// Runs a command inside `node` to completion (killed after `timeout` seconds).
    @discardableResult
    func run(_ node: Node, _ command: [String], timeout: Double = 30, input: URL? = nil) -> Shell {
        Self.shell(["ip", "netns", "exec", namespace(node)] + command, timeout: timeout, input: input)
    }

    /// `command` run with /dev/net/tun replaced, in a mount namespace of its own, by a node of `mode`
    /// (made in the lab's directory): the host's own node is left as it is.
    func withTunNode(mode: String, _ command: [String]) throws -> [String] {
        let node = directory.appendingPathComponent("tun-\(mode)").path
        if !FileManager.default.fileExists(atPath: node) {
            let made = Self.shell(["sh", "-c", "mknod \"$0\" c 10 200 && chmod \(mode) \"$0\"", node], timeout: 10)
            guard made.status == 0 else { throw LabError("mknod \(node) failed: \(made.stderr)") }
        }
        return ["unshare", "--mount", "sh", "-c", "mount --bind \"$0\" /dev/net/tun && exec \"$@\"", node] + command
    }

    /// Runs `body` on a thread of its own that has joined the network namespace `name` (setns acts on
    /// the calling thread only), so in-process code can use the lab's devices and addresses.
    static func inNamespace<T: Sendable>(_ name: String, _ body: @escaping @Sendable () throws -> T) throws -> T {
        let outcome = Locked<Result<T, any Error>?>(nil)
        WorkerThread(name: "in-\(name)") {
            let status = clinux_join_network_namespace("/run/netns/\(name)")
            guard status == 0 else {
                outcome.withLock { $0 = .failure(LabError("cannot join network namespace \(name): errno \(-status)")) }
                return
            }
            let result = Result { try body() }
            outcome.withLock { $0 = result }
        }.join()
        return try outcome.withLock { $0! }.get()
    }

    /// Inner IPv6 on documentation prefixes: 2001:db8:2::/64 between B (::1) and C (::2), the clients'
    /// 2001:db8:19::/64 routed from C through B into tun2, forwarding on at B. Before the relay starts,
    /// so it reads B's new address as its own.
    func prepareInnerIPv6() throws {
        try runAll([
            (.b, ["ip", "-6", "addr", "add", "2001:db8:2::1/64", "dev", "to-c", "nodad"]),
            (.c, ["ip", "-6", "addr", "add", "2001:db8:2::2/64", "dev", "to-b", "nodad"]),
            (.c, ["ip", "-6", "route", "add", "2001:db8:19::/64", "via", "2001:db8:2::1"]),
            (.b, ["ip", "-6", "route", "add", "2001:db8:19::/64", "dev", "tun2"]),
            (.b, ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        ])
    }

    /// The client's side of `prepareInnerIPv6`, once the client has the device up: 2001:db8:19::1 on
    /// tun1 and C's network routed into it.
    func addInnerIPv6ToClient() throws {
        try runAll([
            (.a, ["ip", "-6", "addr", "add", "2001:db8:19::1/64", "dev", "tun1", "nodad"]),
            (.a, ["ip", "-6", "route", "add", "2001:db8:2::/64", "dev", "tun1"])
        ])
    }

    func runAll(_ commands: [(Node, [String])]) throws {
        for (node, command) in commands {
            let result = run(node, command)
            guard result.status == 0 else { throw LabError("\(command.joined(separator: " ")): \(result.stderr)") }
        }
    }

    /// Creates one more namespace of this lab, `<prefix>-<suffix>`, deleted by `tearDown`.
    func addNamespace(_ suffix: String) throws -> String {
        let name = "\(prefix)-\(suffix)"
        extraNamespaces.append(name)
        let added = Self.shell(["ip", "netns", "add", name], timeout: 10)
        guard added.status == 0 else { throw LabError("ip netns add \(name): \(added.stderr)") }
        return name
    }

    /// The kernel's own count of buffers dropped at the UDP sockets bound to `port` in `node`: the
    /// `drops` column (sk_drops) of /proc/net/udp and /proc/net/udp6, the counter SO_RXQ_OVFL reports
    /// with each datagram. nil when no socket there is bound to `port`.
    func kernelSocketDrops(_ node: Node, port: Int) -> Int? {
        let table = run(node, ["cat", "/proc/net/udp", "/proc/net/udp6"], timeout: 10).stdout
        let suffix = ":" + String(format: "%04X", port)
        let drops = table.split(separator: "\n").compactMap { line -> Int? in
            let fields = line.split(separator: " ")
            guard fields.count > 2, fields[1].hasSuffix(suffix), let last = fields.last else { return nil }
            return Int(last)
        }
        return drops.isEmpty ? nil : drops.reduce(0, +)
    }

    func setSysctl(_ node: Node, _ key: String, _ value: Int) throws {
        let result = run(node, ["sysctl", "-qw", "\(key)=\(value)"])
        guard result.status == 0 else { throw LabError("sysctl \(key)=\(value) failed: \(result.stderr)") }
    }

    private func tearDown() {
        for process in processes { _ = process.stop() }
        processes.removeAll()
        _ = Self.shell(
            ["bash", Self.packageRoot.appendingPathComponent("deploy/lab.sh").path, "down"],
            environment: ["LAB_PREFIX": prefix], timeout: 60)
        for name in extraNamespaces { _ = Self.shell(["ip", "netns", "del", name], timeout: 10) }
        try? FileManager.default.removeItem(at: directory)
    }

    /// Deletes labs left by earlier test runs whose process no longer exists (a crash skipped `defer`).
    static func removeStaleLabs() {
        let list = shell(["ip", "netns", "list"], timeout: 10).stdout
        for line in list.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix(prefixStem), let x = name.firstIndex(of: "x"),
                let pid = Int32(name[name.index(name.startIndex, offsetBy: prefixStem.count)..<x]),
                pid != getpid(), kill(pid, 0) != 0
            else { continue }
            _ = shell(["ip", "netns", "del", name], timeout: 10)
        }
    }

    struct Shell {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func shell(_ arguments: [String], environment: [String: String] = [:], timeout: Double, input: URL? = nil) -> Shell {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("udptun-shell-\(UUID()).out")
        let err = out.deletingPathExtension().appendingPathExtension("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: out)
            try? FileManager.default.removeItem(at: err)
        }
        do {
            process.standardOutput = try FileHandle(forWritingTo: out)
            process.standardError = try FileHandle(forWritingTo: err)
            if let input { process.standardInput = try FileHandle(forReadingFrom: input) }
            try process.run()
        } catch {
            return Shell(status: -1, stdout: "", stderr: "could not run \(arguments): \(error)")
        }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { usleep(20_000) }
        if process.isRunning {
            killTree(process.processIdentifier)
            process.waitUntilExit()
            return Shell(status: -9, stdout: read(out), stderr: read(err) + "\n(killed after \(timeout) s)")
        }
        process.waitUntilExit()
        return Shell(status: process.terminationStatus, stdout: read(out), stderr: read(err))
    }

    static func read(_ url: URL) -> String { (try? String(contentsOf: url, encoding: .utf8)) ?? "" }

    /// SIGKILL to `pid` and every process descended from it, children first. Foundation notices that
    /// a child exited only when every process holding its inherited descriptors has, so a grandchild
    /// left running (a `socat` whose `timeout` was killed) would make `waitUntilExit` hang.
    static func killTree(_ pid: Int32) {
        var children: [Int32: [Int32]] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let child = Int32(entry),
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, let parent = Int32(fields[1]) { children[parent, default: []].append(child) }
        }
        func killBelow(_ pid: Int32) {
            for child in children[pid] ?? [] { killBelow(child) }
            kill(pid, SIGKILL)
        }
        killBelow(pid)
    }
}

struct LabError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A background process started by a test.
final class Spawned: @unchecked Sendable {
    let process = Process()
    let stdoutURL: URL
    let stderrURL: URL
    let arguments: [String]

    init(arguments: [String], logs: URL) throws {
        self.arguments = arguments
        stdoutURL = logs.appendingPathExtension("out")
        stderrURL = logs.appendingPathExtension("err")
        _ = FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var stdout: String { Lab.read(stdoutURL) }
    var stderr: String { Lab.read(stderrURL) }
    var isRunning: Bool { process.isRunning }

    /// Deletes the two log files (for processes started outside a lab, whose directory stays).
    func removeLogs() {
        try? FileManager.default.removeItem(at: stdoutURL)
        try? FileManager.default.removeItem(at: stderrURL)
    }

    /// Each thread's name and the CPUs it may run on (Cpus_allowed_list), from /proc.
    func threadAffinities() -> [(name: String, cpus: String)] {
        let tasks = "/proc/\(process.processIdentifier)/task"
        let ids = (try? FileManager.default.contentsOfDirectory(atPath: tasks)) ?? []
        return ids.compactMap { id in
            let status = Lab.read(URL(fileURLWithPath: "\(tasks)/\(id)/status")).split(separator: "\n")
            func field(_ key: String) -> String? {
                status.first { $0.hasPrefix(key + ":") }.map { $0.dropFirst(key.count + 1).trimmingCharacters(in: .whitespaces) }
            }
            guard let name = field("Name"), let cpus = field("Cpus_allowed_list") else { return nil }
            return (name, cpus)
        }
    }

    /// Waits for `text` on stderr (where the programs log). Throws with the logs if the process exits
    /// or the time runs out first.
    func waitForLog(_ text: String, timeout: Double = 15) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if stderr.contains(text) { return }
            if !process.isRunning {
                throw LabError(
                    "\(arguments.joined(separator: " ")) exited \(process.terminationStatus) before '\(text)':\n\(stderr)\(stdout)")
            }
            usleep(20_000)
        }
        throw LabError("no '\(text)' from \(arguments.joined(separator: " ")) within \(timeout) s:\n\(stderr)")
    }

    /// Waits for the process to exit by itself; nil if it is still running after `timeout`.
    func wait(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { usleep(20_000) }
        if process.isRunning { return nil }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// SIGTERM, then SIGKILL (to it and its descendants) after 5 s. Returns the exit status.
    @discardableResult
    func stop() -> Int32 {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            if wait(timeout: 5) == nil {
                Lab.killTree(process.processIdentifier)
                process.waitUntilExit()
            }
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// A sink's latest unique-payload count, from its frequent JSON reports (0 before the first).
    var latestReceived: Int {
        for line in stdout.split(separator: "\n").reversed() {
            if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let value = (object["received"] as? NSNumber)?.intValue
            {
                return value
            }
        }
        return 0
    }

    /// The last JSON report line whose "event" is `event`.
    func report(_ event: String = "final") -> [String: Any]? {
        for line in stdout.split(separator: "\n").reversed() {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
            if object["event"] as? String == event { return object }
        }
        return nil
    }
}

extension Dictionary where Key == String, Value == Any {
    func int(_ key: String) -> Int { (self[key] as? NSNumber)?.intValue ?? -1 }
    func drop(_ reason: String) -> Int { ((self["drops"] as? [String: Any])?[reason] as? NSNumber)?.intValue ?? -1 }
}

extension Lab {
    /// Installs a Debian package when its command is missing, so the test command sets up a fresh machine.
    static func ensureCommand(_ command: String, package: String) throws {
        try ensure(["sh", "-c", "command -v \(command)"], what: command, package: package)
    }

    /// Installs the Debian package of a module of the system python (/usr/bin/python3: the python3 on
    /// PATH may be another build) when the module does not import.
    static func ensurePythonModule(_ module: String, package: String) throws {
        try ensure(["/usr/bin/python3", "-c", "import \(module)"], what: "python module \(module)", package: package)
    }

    private static func ensure(_ check: [String], what: String, package: String) throws {
        if shell(check, timeout: 30).status == 0 { return }
        let install = shell(
            ["sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \(package)"],
            timeout: 300)
        guard install.status == 0 else { throw LabError("\(what) is missing and apt-get install \(package) failed: \(install.stderr)") }
    }

    /// Writes `bytes` to a file in the lab's directory.
    func file(_ name: String, _ bytes: [UInt8]) throws -> URL {
        let url = directory.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url
    }

    /// Sends one UDP datagram with exactly `bytes` as payload from `node` (socat reads the file in one
    /// read and sends it as one datagram).
    func sendDatagram(_ bytes: [UInt8], from node: Node, to destination: String, bind: String? = nil) throws {
        let url = try file("datagram-\(UUID())", bytes)
        defer { try? FileManager.default.removeItem(at: url) }
        let target = "UDP-SENDTO:\(destination)" + (bind.map { ",bind=\($0)" } ?? "")
        let result = run(node, ["socat", "-u", "OPEN:\(url.path)", target], timeout: 10)
        guard result.status == 0 else { throw LabError("socat send failed: \(result.stderr)") }
    }

    /// For the message of an expectation on random bytes: how to draw the same ones again.
    static var seedNote: String { "seed \(TestSeed.value); UDPTUN_TEST_SEED=\(TestSeed.value) repeats the random bytes" }

    /// `count` bytes drawn from `generator`. With a `SeededGenerator` the bytes follow from the run's
    /// seed: name `TestSeed.value` in the failure messages, and UDPTUN_TEST_SEED=that repeats them.
    static func randomBytes(_ count: Int, using generator: inout SeededGenerator) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes { raw in
            var offset = 0
            while offset + 8 <= count {
                raw.storeBytes(of: generator.next().littleEndian, toByteOffset: offset, as: UInt64.self)
                offset += 8
            }
            if offset < count {
                let last = generator.next().littleEndian
                withUnsafeBytes(of: last) { word in
                    for index in offset..<count { raw[index] = word[index - offset] }
                }
            }
        }
        return bytes
    }
}
