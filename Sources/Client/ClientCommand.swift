import ArgumentParser
import CLI
import Engine
import KernelIO
import Logging
import Measurement
import Monitoring
import WireFormat

@main
struct ClientCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "udptun-client",
        abstract: "Tunnel the IP packets routed into a TUN device to a udptun relay over UDP, and generate test traffic.",
        discussion: """
            Packets the kernel routes into the TUN device are validated and sent to the relay, one IP packet per UDP datagram; datagrams coming back from the relay are validated and written to the device, so traffic is tunnelled both ways. Route the far network into the device first, e.g. ip route add 198.18.2.0/24 dev tun1.

            With --gtpu the client is a RAN node (gNB/eNB) with one static session: it sends G-PDUs with the uplink TEID and a PDU Session Container (3GPP TS 29.281, TS 38.415) to a UPF on port 2152, answers Echo Requests and sends its own.

            The generator sends ordinary UDP to --generate (through the kernel, so it follows the routes into the tunnel). Each payload carries a stream id, a sequence number, a send time and a CRC, which udptun-sink uses to count loss, duplicates, reordering, corruption and latency.

            With --measure-rtt the generator also reads the answers of a sink started with --reflect and reports round trips measured on this machine's clock alone (rtt_p50_us … rtt_max_us in --json), the answers received, loss on the way out (probes the sink never received), answers the sink's rate limit refused, loss on the way back, and reordered answers. The answers are ordinary UDP too, so this works through every framing, and across three machines without synchronised clocks. Answers are read until 1 s after the last probe.

            EXAMPLES
              udptun-client --relay 198.18.1.2:8080
              udptun-client --relay 198.18.1.2 --generate 198.18.2.2:8080 \\
                  --count 10000 --rate 5000
              udptun-client --relay relay.example:8080 --tun tun1 --mtu 1400 --json
              udptun-client --no-tunnel --generate 198.18.2.2:8080 --count 1000 \\
                  --exit-when-done
              udptun-client --relay 198.18.1.2 --key-file /etc/udptun/key --encrypt
              udptun-client --relay 198.18.1.2 --key-file /etc/udptun/key --encrypt \\
                  --cipher aes-256-gcm                       # CPUs with AES instructions
              udptun-client --relay 198.18.1.2 --threads 1 --busy-poll 20000 \\
                  --cpu 1                                    # low latency
              udptun-client --relay 198.18.1.2 --queues 4   # many flows, many cores
              udptun-client --relay 198.18.1.2 --gtpu --teid 0x100 --qfi 9
              udptun-client --relay 198.18.1.2 --generate 198.18.2.2:8080 \\
                  --measure-rtt --rate 500 --duration 10 --exit-when-done

            EXIT STATUS
              0   stopped by SIGINT/SIGTERM or finished (--exit-when-done)
              64  usage error
              78  configuration to fix: permissions, device busy, address in use,
                  device addresses unreadable (--keepalive)
              1   runtime failure
            """,
        version: UDPTunVersion.current)

    @Option(help: "The relay's UDP address (HOST:PORT; port 8080 when omitted).")
    var relay: String?

    @Option(help: "TUN device to attach to (created if it does not exist).")
    var tun = "tun1"

    @Option(
        help: ArgumentHelp(
            "TUN MTU: a number, or 'auto' for the path MTU toward the relay minus the framing overhead.",
            valueName: "N|auto"))
    var mtu = "auto"

    @Option(help: "Local UDP address to send from (default: any address, a free port).")
    var bind: String?

    @Flag(help: "Run only the generator (no TUN device, no relay): a baseline without the tunnel.")
    var noTunnel = false

    @Option(help: ArgumentHelp("Send generator payloads to this UDP address.", valueName: "HOST:PORT"))
    var generate: String?

    @Option(help: "Generator: payloads to send (0 = until stopped or --duration).")
    var count: UInt64 = 0

    @Option(help: "Generator: payloads per second (0 = as fast as possible).")
    var rate: Double = 1000

    @Option(help: "Generator: UDP payload size in bytes (32 to 65507).")
    var size = 512

    @Option(help: "Generator: stop after this many seconds.")
    var duration: Double?

    @Option(help: "Generator: stream id (default: random, so restarts are told apart).")
    var streamID: UInt32?

    @Flag(help: "Exit once the generator has finished (after a short drain).")
    var exitWhenDone = false

    @Flag(help: "Generator: read the answers of a sink started with --reflect and report round-trip percentiles and loss each way.")
    var measureRTT = false

    @Option(
        help: ArgumentHelp(
            "Send a keepalive when nothing was sent to the relay for this many seconds (0 = never), so a NAT on the way keeps its mapping and the relay its return path; 25 suits most NATs. With --gtpu it is an Echo Request.",
            valueName: "seconds"))
    var keepalive: Double = 0

    @OptionGroup var keys: KeyOptions

    @OptionGroup(title: "GTP-U (RAN node)") var gtpu: GTPUClientOptions

    @OptionGroup var offloads: OffloadOptions

    @OptionGroup var workers: WorkerOptions

    @OptionGroup var privileges: PrivilegeOptions

    @OptionGroup var common: CommonOptions

    func validate() throws {
        if keys.encrypt, keys.keyFile == nil { throw ValidationError("--encrypt needs --key-file") }
        if gtpu.gtpu, keys.keyFile != nil {
            throw ValidationError(
                "--gtpu and --key-file cannot be combined: GTP-U carries packets as 3GPP defines it, unauthenticated (protect N3 with IPsec, as operators do)"
            )
        }
        if noTunnel {
            guard generate != nil else { throw ValidationError("--no-tunnel needs --generate") }
        } else {
            guard relay != nil else { throw ValidationError("--relay HOST:PORT is required (or --no-tunnel with --generate)") }
        }
        if mtu != "auto" {
            guard let value = Int(mtu), (68...65535).contains(value) else {
                throw ValidationError("--mtu must be 'auto' or a number from 68 to 65535")
            }
        }
        guard (ProbePayload.headerLength...ProbePayload.maximumLength).contains(size) else {
            throw ValidationError("--size must be \(ProbePayload.headerLength) to \(ProbePayload.maximumLength) bytes")
        }
        guard rate >= 0, rate.isFinite else { throw ValidationError("--rate must be 0 or more") }
        if let duration { guard duration > 0 else { throw ValidationError("--duration must be positive") } }
        guard keepalive >= 0, keepalive <= 86_400 else { throw ValidationError("--keepalive must be 0 (off) to 86400 seconds") }
        if keepalive > 0, noTunnel { throw ValidationError("--keepalive needs the tunnel (not --no-tunnel)") }
        if measureRTT, generate == nil { throw ValidationError("--measure-rtt needs --generate (to a sink started with --reflect)") }
        if exitWhenDone {
            guard generate != nil, count > 0 || duration != nil else {
                throw ValidationError("--exit-when-done needs --generate with --count or --duration")
            }
        }
    }

    func run() throws {
        try runReportingErrors(program: "udptun-client") { try runClient() }
    }

    private func runClient() throws {
        let logger = common.makeLogger(label: "udptun.client")
        let target = try generate.map { try AddressResolver.resolve($0, defaultPort: 8080) }
        let endpoint = try TunnelEndpoint(
            role: "client", logger: logger, common: common, offloads: offloads, workers: workers,
            privileges: privileges)
        let counters = (0..<(noTunnel ? 1 : workers.queues)).map { _ in TunnelCounters() }
        let generatorCounters = ProbeGenerator.Counters()
        var tunnel: Tunnel?
        var plumbing: TunnelEndpoint.Plumbing?
        var gtpuMonitor: GTPUPathMonitor?
        var tasks: [Housekeeping.Task] = []
        var tunnelling: () -> Void = {}
        if !noTunnel, let relay {
            let relayAddress = try AddressResolver.resolve(relay, defaultPort: gtpu.gtpu ? GTPU.port : 8080)
            let framing: any Framing
            if gtpu.gtpu {
                let local = UDPSocket.sourceAddress(toward: relayAddress) ?? .unspecified(like: relayAddress.ip)
                let gtpuFraming = gtpu.make(localAddress: local, relay: relayAddress.ip)
                gtpuMonitor = gtpuFraming.monitor
                framing = gtpuFraming
            } else {
                framing = try keys.make(logger: logger)
            }
            framing.describe(logger)
            let tunMTU = try chooseMTU(relay: relayAddress, overhead: framing.overhead)
            let queues = try endpoint.openDevice(tun) { _ in tunMTU }
            let anyAddress = IPAddress.unspecified(like: relayAddress.ip)
            let local =
                try bind.map { try AddressResolver.resolve($0, defaultPort: nil, anyAddress: anyAddress) }
                ?? SocketAddress(ip: anyAddress, port: 0)
            let pipes = try endpoint.bindSockets(local, for: queues)
            plumbing = pipes
            tunnel = Tunnel(
                queues: queues, sockets: pipes.sockets, counters: counters, framing: framing,
                route: .fixed(relayAddress), policy: InboundPolicy(onlyPeer: relayAddress.ip, maximumPacketLength: tunMTU))
            if let gtpuMonitor {
                tasks += GTPUEcho.tasks(
                    interval: gtpu.echoInterval, socket: pipes.sockets[0], monitor: gtpuMonitor,
                    counters: counters[0], peers: { [relayAddress] }, log: endpoint.log)
            }
            if keepalive > 0 {
                tasks.append(
                    try keepaliveTask(
                        framing: framing, socket: pipes.sockets[0], relay: relayAddress, counters: counters,
                        monitor: gtpuMonitor))
            }
            // As the relay's "relay listening": once it is printed, the data plane runs.
            tunnelling = {
                logger.info(
                    "client tunnelling",
                    metadata: [
                        "tun": "\(pipes.device.name)", "mtu": "\(tunMTU)", "relay": "\(relayAddress)",
                        "local": "\(pipes.sockets[0].localAddress.map(\.description) ?? "?")"
                    ])
            }
        }

        let generator = target.map { target in
            ProbeGenerator(
                target: target, count: count, rate: rate, size: size, duration: duration,
                streamID: streamID ?? UInt32.random(in: 1...UInt32.max))
        }
        // --measure-rtt: the answers come back to the socket the probes leave from, read on a thread of its own.
        let rtt = try generator.flatMap { generator in
            try measureRTT
                ? RTTReceiver(socket: generator.openSocket(), target: generator.target, streamID: generator.streamID) : nil
        }
        try endpoint.run(
            tunnel, plumbing: plumbing, counters: counters, tasks: tasks,
            metrics: { exposition in
                if generator != nil { exposition.addGenerator(generatorCounters) }
                if let gtpuMonitor { exposition.addGTPUPaths(gtpuMonitor) }
            },
            more: {
                var threads =
                    generator.map {
                        [generatorThread($0, counters: generatorCounters, rtt: rtt, lifecycle: endpoint.lifecycle, logger: logger)]
                    }
                    ?? []
                if let rtt {
                    let lifecycle = endpoint.lifecycle
                    threads.append(WorkerThread(name: "rtt") { rtt.run(lifecycle) })
                }
                return threads
            }, ready: tunnelling
        ) { _ in
            var extra: [(String, UInt64)] = []
            if generator != nil {
                extra += [("generated", generatorCounters.sent.load), ("generate_failed", generatorCounters.failed.load)]
            }
            if let gtpuMonitor { extra += GTPUEcho.figures(gtpuMonitor) }
            return TunnelEndpoint.ReportFields(extra: extra, rtt: rtt?.accounting.totals)
        }
    }

    /// `--keepalive`: when nothing was sent for that long, an Echo Request (GTP-U) or the framing's
    /// keepalive from the device's inner addresses. Those are read once here, so a client that cannot
    /// read them (a sandbox refusing AF_NETLINK) refuses to start instead of sending keepalives from
    /// no address, which refresh no return path; a later read that fails keeps the last list.
    private func keepaliveTask(
        framing: any Framing, socket: UDPSocket, relay relayAddress: SocketAddress,
        counters: [TunnelCounters], monitor: GTPUPathMonitor?
    ) throws -> Housekeeping.Task {
        let send: @Sendable () -> Void
        if let monitor {
            let counters = counters[0]
            send = { GTPUEcho.sendEchoRequest(socket: socket, to: relayAddress, monitor: monitor, counters: counters) }
        } else {
            let tun = tun
            let first: [IPAddress]
            do throws(SystemError) {
                first = try InterfaceAddresses.of(interface: tun)
            } catch {
                throw UserFacingError(
                    "refusing to start: --keepalive cannot read the addresses of \(tun) to name them, so the relay would refresh no return path (\(error)); allow AF_NETLINK sockets (systemd: RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK)",
                    exitCode: ExitStatus.configuration)
            }
            let last = Locked(first)
            let sender = KeepaliveSender(framing: framing, socket: socket, relay: relayAddress, counters: counters[0]) {
                if let fresh = try? InterfaceAddresses.of(interface: tun) { last.withLock { $0 = fresh } }
                return last.withLock { $0 }
            }
            send = { sender.send() }
        }
        return Keepalive.task(interval: keepalive, dataSent: { counters.snapshot()[.sent] }, send: send)
    }

    /// The generator's thread; with --exit-when-done it stops the client once done and drained (with
    /// `rtt`, once its answers have had time to come back).
    private func generatorThread(
        _ generator: ProbeGenerator, counters: ProbeGenerator.Counters, rtt: RTTReceiver?, lifecycle: Lifecycle,
        logger: Logger
    ) -> WorkerThread {
        logger.info(
            "generator starting",
            metadata: [
                "target": "\(generator.target)", "count": "\(count == 0 ? "unbounded" : String(count))",
                "rate": "\(rate == 0 ? "max" : String(rate))", "size": "\(size)", "stream": "\(generator.streamID)"
            ])
        let exitWhenDone = exitWhenDone
        return WorkerThread(name: "generator") {
            if let rtt {
                generator.run(lifecycle, counters: counters, socket: rtt.socket) { logger.warning("generator: send failed: \($0)") }
                rtt.finish()
            } else {
                generator.run(lifecycle, counters: counters) { logger.warning("generator: send failed: \($0)") }
            }
            logger.info(
                "generator finished",
                metadata: [
                    "sent": "\(counters.sent.load)", "failed": "\(counters.failed.load)", "stream": "\(generator.streamID)"
                ])
            if exitWhenDone, !lifecycle.isStopping {
                if let rtt {
                    // The answers' drain covers the tunnel's; bounded in case the thread is held up.
                    for _ in 0..<300 where !rtt.isFinished && !lifecycle.isStopping { Clock.sleep(nanoseconds: 10_000_000) }
                } else {
                    Clock.sleep(nanoseconds: 500_000_000)  // let the tunnel drain what is in flight
                }
                lifecycle.stop()
            }
        }
    }

    /// `--mtu auto`: what fits in one datagram toward the relay without fragmentation.
    private func chooseMTU(relay: SocketAddress, overhead: Int) throws -> Int {
        if let fixed = Int(mtu) { return fixed }
        guard let path = UDPSocket.pathMTU(toward: relay) else {
            throw UserFacingError(
                "--mtu auto: no route toward the relay \(relay); add one or give --mtu N",
                exitCode: ExitStatus.configuration)
        }
        let headers = (relay.ip.isIPv4 ? 20 : 40) + 8 + overhead
        let fitted = path - headers
        guard fitted >= 68 else {
            throw UserFacingError(
                "--mtu auto: path MTU \(path) toward \(relay) leaves only \(fitted) bytes for packets; give --mtu N",
                exitCode: ExitStatus.configuration)
        }
        if fitted < 1280 { Logger(label: "udptun.client").warning("TUN MTU \(fitted) is below 1280: inner IPv6 will not work") }
        return fitted
    }
}
