import ArgumentParser
import CLI
import Engine
import KernelIO
import Logging
import Monitoring
import WireFormat

@main
struct RelayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "udptun-relay",
        abstract: "Receive IP packets tunnelled in UDP, validate them and forward them through a TUN device.",
        discussion: """
            Datagrams from sources inside an --allow prefix are decapsulated, validated and written to the TUN device, so the kernel forwards the inner packets. Packets the kernel routes back into the device are sent to the UDP endpoint their destination (a client's inner address) last sent from.

            The kernel must forward: net.ipv4.ip_forward=1, and reverse-path filtering on the TUN device must not be strict (the effective value is max(conf.all.rp_filter, conf.<tun>.rp_filter); it must be 0 or 2). The relay checks these before it starts and prints the exact sysctl commands.

            Packets to the relay's own addresses, or to any it delivers locally (its local routing table: subnet broadcast addresses, prefixes routed local, anycast), are never forwarded. The relay reads them at start (it refuses to start if it cannot: allow AF_NETLINK sockets in a sandbox) and again whenever the kernel announces a change.

            EXAMPLES
              udptun-relay --allow 198.18.1.0/24
              udptun-relay --listen [::]:8080 --allow 2001:db8::/32 --ipv6
              udptun-relay --check --tun tun2
              udptun-relay --fix-sysctl --allow 198.18.1.1 --json
              udptun-relay --genkey > /etc/udptun/key && chmod 600 /etc/udptun/key
              udptun-relay --allow 198.18.1.0/24 --key-file /etc/udptun/key --encrypt
              udptun-relay --allow 198.18.1.0/24 \\
                  --allowed-ips 198.18.1.1/32=198.19.0.1/32 --allow-dest 198.18.2.0/24
              udptun-relay --allow any --client-key alice.key=198.19.0.2/32 --encrypt
              udptun-relay --allow 198.18.1.0/24 --queues 4   # many clients, 4 cores
              udptun-relay --allow 198.18.1.0/24 --gtpu --session 0x100=198.19.0.1/32

            EXIT STATUS
              0   stopped by SIGINT/SIGTERM, or --check passed
              64  usage error
              78  configuration to fix: sysctls, permissions, device busy, address
                  in use, own addresses unreadable
              1   runtime failure
            """,
        version: UDPTunVersion.current)

    @Option(
        help: ArgumentHelp(
            "UDP address to listen on (HOST:PORT, [IPV6]:PORT or :PORT). Default 0.0.0.0:8080, with --gtpu 0.0.0.0:2152.",
            valueName: "address"))
    var listen: String?

    @Option(help: "TUN device to attach to (created if it does not exist).")
    var tun = "tun2"

    @Option(
        name: .customLong("allow"),
        help: ArgumentHelp(
            "Accept datagrams only from sources in this prefix (repeatable). 'any' accepts everyone.",
            valueName: "CIDR"))
    var allow: [String] = []

    @Option(
        name: .customLong("allowed-ips"),
        help: ArgumentHelp(
            "Inner source addresses a client may use, by its UDP source (repeatable): PEER_CIDR=INNER_CIDR[,INNER_CIDR...]. Without any, inner sources are not checked.",
            valueName: "PEER=INNER"))
    var allowedIPs: [String] = []

    @Option(
        name: .customLong("client-key"),
        help: ArgumentHelp(
            "A client's own key file and the inner source addresses datagrams sealed with it may carry (repeatable): PATH=INNER_CIDR[,INNER_CIDR...]. That client passes the same file as --key-file. Holders of --key-file's shared key are not limited this way.",
            valueName: "PATH=INNER"))
    var clientKey: [String] = []

    @Option(
        name: .customLong("allow-dest"),
        help: ArgumentHelp(
            "Forward only to destinations in this prefix (repeatable). The relay's own addresses, whatever its kernel delivers locally (local, broadcast and anycast routes), loopback, link-local, multicast and broadcast are never forwarded to.",
            valueName: "CIDR"))
    var allowDest: [String] = []

    @Flag(help: "Forward inner IPv6 packets (requires net.ipv6.conf.all.forwarding=1).")
    var ipv6 = false

    @Option(help: "Set the TUN device's MTU (default: leave it as it is).")
    var mtu: Int?

    @Option(
        help: ArgumentHelp(
            "Most client inner addresses remembered for the return path (each takes \(ClientTable.bytesPerEntry) bytes once learned). When full, a new address replaces the one idle longest; clients that sent in the last 10 s are never replaced.",
            valueName: "n"))
    var maxClients = 65_536

    @Option(
        help: ArgumentHelp(
            "New client inner addresses accepted per second (and at once); more are dropped and counted as new_client_limit, so a sender cycling through sources cannot crowd out known clients.",
            valueName: "n"))
    var newClientsPerSecond = 10_000

    @Option(
        help: ArgumentHelp(
            "Replies to datagrams nobody authenticated, per second across all sources (and at once): GTP-U Echo Responses, Error Indications and Supported Extension Headers Notifications, and without --key-file the ICMP too-big errors. Each source gets at most \(ReplyBudget.perSourcePerSecond) a second; what the budget refuses is counted as replies_limited. 0 sends none.",
            valueName: "n"))
    var replyRate = ReplyBudget.defaultPerSecond

    @Flag(
        help: ArgumentHelp(
            "With --metrics: one series per client inner address (packets and bytes each way, last seen), as many as --max-clients."))
    var metricsPerClient = false

    @Flag(help: "Set the sysctls forwarding needs, logging each change, then start.")
    var fixSysctl = false

    @Flag(help: "Only check the sysctls, print the result and exit (0 when all pass, 78 otherwise).")
    var check = false

    @Flag(help: "Print a new random key for --key-file and exit.")
    var genkey = false

    @OptionGroup var keys: KeyOptions

    @OptionGroup(title: "GTP-U (UPF)") var gtpu: GTPURelayOptions

    @OptionGroup var offloads: OffloadOptions

    @OptionGroup var workers: WorkerOptions

    @OptionGroup var privileges: PrivilegeOptions

    @OptionGroup var common: CommonOptions

    func validate() throws {
        if !check, !genkey {
            guard !allow.isEmpty else {
                throw ValidationError(
                    """
                    no --allow given: the relay would inject packets from anyone who can reach its port. \
                    Name the client prefixes (--allow 198.18.1.0/24), or pass --allow any to accept everyone
                    """)
            }
        }
        if gtpu.gtpu, keys.keyFile != nil || !clientKey.isEmpty {
            throw ValidationError(
                "--gtpu and --key-file/--client-key cannot be combined: GTP-U carries packets as 3GPP defines it, unauthenticated (protect N3 with IPsec, as operators do)"
            )
        }
        if keys.encrypt, keys.keyFile == nil, clientKey.isEmpty {
            throw ValidationError("--encrypt needs --key-file or --client-key")
        }
        _ = try allowedSources()
        _ = try packetPolicy(ownAddresses: [])
        if let mtu, !(68...65535).contains(mtu) { throw ValidationError("--mtu must be 68 to 65535") }
        guard (1...ClientTable.maximumCapacity).contains(maxClients) else {
            throw ValidationError("--max-clients must be 1 to \(ClientTable.maximumCapacity)")
        }
        if metricsPerClient, common.metrics == nil { throw ValidationError("--metrics-per-client needs --metrics HOST:PORT") }
        guard (1...1_000_000).contains(newClientsPerSecond) else { throw ValidationError("--new-clients-per-second must be 1 to 1000000") }
        guard (0...1_000_000).contains(replyRate) else { throw ValidationError("--reply-rate must be 0 to 1000000") }
    }

    /// nil means any source.
    func allowedSources() throws -> [IPPrefix]? { try AllowedSources.parse(allow) }

    func packetPolicy(ownAddresses: [IPAddress]) throws -> PacketPolicy {
        let rules = try allowedIPs.map { text in
            guard let rule = PacketPolicy.ClientRule(text) else {
                throw ValidationError(
                    "--allowed-ips '\(text)' is not PEER_CIDR=INNER_CIDR[,INNER_CIDR...] (e.g. 198.18.1.1/32=198.19.0.1/32)")
            }
            return rule
        }
        // Key indices follow KeyOptions.make: the shared key (unlimited here) first.
        let keyRules = try clientKeyRules()
        let innerSourcesBySession: [[IPPrefix]?] =
            gtpu.gtpu
            ? try gtpu.parsedSessions().map(\.innerSources)
            : (keys.keyFile == nil ? [] : [nil]) + keyRules.map(\.innerSources)
        let destinations = try allowDest.map { text in
            guard let prefix = IPPrefix(text) else { throw ValidationError("--allow-dest '\(text)' is not a prefix such as 198.18.2.0/24") }
            return prefix
        }
        return PacketPolicy(
            clientRules: rules, innerSourcesBySession: innerSourcesBySession,
            allowedDestinations: destinations.isEmpty ? nil : destinations, ownAddresses: ownAddresses)
    }

    func clientKeyRules() throws -> [PacketPolicy.KeyRule] {
        try clientKey.map { text in
            guard let rule = PacketPolicy.KeyRule(text) else {
                throw ValidationError("--client-key '\(text)' is not PATH=INNER_CIDR[,INNER_CIDR...] (e.g. alice.key=198.19.0.2/32)")
            }
            return rule
        }
    }

    func run() throws {
        try runReportingErrors(program: "udptun-relay") { try runRelay() }
    }

    private func runRelay() throws {
        if genkey {
            emitReport(TunnelKey.generate())
            return
        }
        let logger = common.makeLogger(label: "udptun.relay")
        if check {
            let findings = ForwardingCheck(tunName: tun, forwardIPv6: ipv6).failures()
            for finding in findings { emitReport("FAIL \(finding)") }
            if findings.isEmpty { emitReport("OK forwarding sysctls are ready for \(tun)") }
            throw ExitCode(findings.isEmpty ? 0 : ExitStatus.configuration)
        }
        // Keys are loaded before anything else is set up, so a bad key file is the error reported.
        let keyedFraming = gtpu.gtpu ? nil : try keys.make(logger: logger, clientKeyFiles: try clientKeyRules().map(\.path))
        let listenAddress = try AddressResolver.resolve(
            listen ?? (gtpu.gtpu ? "0.0.0.0:\(GTPU.port)" : "0.0.0.0:8080"),
            defaultPort: gtpu.gtpu ? GTPU.port : 8080)
        let endpoint = try TunnelEndpoint(
            role: "relay", logger: logger, common: common, offloads: offloads, workers: workers,
            privileges: privileges)
        let queues = try endpoint.openDevice(tun) { _ in mtu }
        try ForwardingCheck(tunName: queues[0].name, forwardIPv6: ipv6).requireReady(fixing: fixSysctl, logger: logger)
        let plumbing = try endpoint.bindSockets(listenAddress, for: queues)
        let sources = try allowedSources()
        let ownAddresses = try readOwnAddresses()
        var packets = try packetPolicy(ownAddresses: ownAddresses.current.addresses)
        packets.localPrefixes = ownAddresses.snapshot.localPrefixes
        let gtpuFraming =
            keyedFraming == nil
            ? try gtpu.make(listening: listenAddress, ownAddresses: ownAddresses.current.addresses) : nil
        let framing: any Framing = keyedFraming ?? gtpuFraming!
        let counters = queues.map { _ in TunnelCounters() }
        let clients = ClientTable(capacity: maxClients, newPerSecond: newClientsPerSecond)
        if sources == nil {
            logger.warning("--allow any: accepting datagrams from every source; anyone who reaches \(listenAddress) can inject packets")
        }
        framing.describe(logger)
        // Per-session counts cost a little per packet: kept only where there are several sessions to
        // tell apart (with one, the totals are its counts).
        let sessionCounters = framing.sessionCount > 1 ? SessionCounters(sessions: framing.sessionCount) : nil
        // How the final report names each session, in the framing's order: a GTP-U session by its
        // uplink TEID, a key by its file (the shared --key-file first).
        let sessionNames =
            try gtpuFraming.map { $0.sessions.map { "0x" + String($0.uplinkTEID, radix: 16) } }
            ?? (keys.keyFile == nil ? [] : ["shared"]) + clientKeyRules().map(\.path)
        let tunnel = Tunnel(
            queues: queues, sockets: plumbing.sockets, counters: counters, framing: framing, route: .clients(clients),
            policy: InboundPolicy(
                allowedSources: sources, forwardIPv6: ipv6, maximumPacketLength: plumbing.device.mtu ?? 65535,
                packets: packets),
            clients: clients, ownAddresses: ownAddresses, sessionCounters: sessionCounters,
            replyBudget: ReplyBudget(perSecond: replyRate))
        var tasks = [ownAddresses.refreshTask(log: endpoint.log)]
        if let gtpuFraming {
            tasks += GTPUEcho.relayTasks(
                gtpuFraming, interval: gtpu.echoInterval, socket: plumbing.sockets[0], counters: counters[0],
                clients: clients, log: endpoint.log)
        }
        try endpoint.run(
            tunnel, plumbing: plumbing, counters: counters, tasks: tasks,
            metrics: { exposition in
                if let sessionCounters { exposition.addSessions(names: sessionNames, counters: sessionCounters) }
                exposition.addClientTable(clients)
                exposition.addOwnAddresses(ownAddresses)
                if let gtpuFraming { exposition.addGTPUPaths(gtpuFraming.monitor) }
                if metricsPerClient { exposition.addClients(clients) }
            },
            ready: {
                logger.info(
                    "relay listening",
                    metadata: [
                        "listen": "\(plumbing.sockets[0].localAddress ?? listenAddress)", "tun": "\(plumbing.device.name)",
                        "mtu": "\(plumbing.device.mtu.map(String.init) ?? "?")",
                        "allow": "\(sources.map { $0.map(\.description).joined(separator: ",") } ?? "any")",
                        "ipv6": "\(ipv6)", "max_clients": "\(maxClients)", "client_bytes": "\(ClientTable.bytesPerEntry)",
                        "allowed_ips": "\(packets.clientRules.isEmpty ? "unchecked" : allowedIPs.joined(separator: " "))",
                        "client_keys": "\(clientKey.count)", "reply_rate": "\(replyRate)",
                        "allow_dest":
                            "\(allowDest.isEmpty ? "any but own/loopback/link-local/multicast" : allowDest.joined(separator: ","))"
                    ])
            }
        ) { final in
            TunnelEndpoint.ReportFields(
                extra: [
                    ("clients", UInt64(clients.count)), ("clients_evicted", clients.evicted),
                    ("own_address_refresh_failed", ownAddresses.failedRefreshes)
                ]
                    + (gtpuFraming.map { GTPUEcho.figures($0.monitor) } ?? []),
                sessions: final && (sessionNames.count > 1 || gtpuFraming != nil)
                    ? Array(zip(sessionNames, sessionCounters?.figures ?? [SessionCounts(totals: counters.snapshot())])) : [],
                clients: final ? TunnelReport.ClientList(clients.clients(), now: Clock.monotonicNanoseconds()) : nil)
        }
    }

    /// Fails closed: without its own addresses the relay cannot keep clients from reaching it.
    private func readOwnAddresses() throws -> OwnAddresses {
        do throws(SystemError) {
            let watch = try AddressWatch()  // before the first read, so no change falls between
            return try OwnAddresses(changes: { watch.changed() }, localRoutes: { () throws(SystemError) in try LocalRoutes.read() })
        } catch {
            throw UserFacingError(
                "refusing to start: cannot read this host's addresses, so packets to the relay itself could not be dropped (\(error)); allow AF_NETLINK sockets (systemd: RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK)",
                exitCode: ExitStatus.configuration)
        }
    }
}
