import KernelIO
import WireFormat

/// `--keepalive`: when the data plane has sent nothing for `interval`, the client sends a keepalive,
/// so a NAT mapping on the way and the relay's return path stay (WireGuard's PersistentKeepalive).
/// It runs on the housekeeping thread and reads only the data plane's sent counter.
public enum Keepalive {
    /// A task that calls `send` once nothing left for `interval` seconds, and again every `interval`
    /// while that lasts. `dataSent` is the data plane's total of datagrams sent.
    public static func task(
        interval: Double, dataSent: @escaping @Sendable () -> UInt64,
        now clock: @escaping @Sendable () -> UInt64 = { Clock.monotonicNanoseconds() },
        send: @escaping @Sendable () -> Void
    ) -> Housekeeping.Task {
        let idleFor = UInt64(interval * 1e9)
        // (last total seen, when it last changed or a keepalive left)
        let state = Locked<(total: UInt64, since: UInt64)>((dataSent(), clock()))
        return Housekeeping.Task("keepalive", every: max(0.05, min(1, interval / 4))) {
            let total = dataSent(), now = clock()
            let due = state.withLock { state -> Bool in
                if total != state.total {
                    state = (total, now)
                    return false
                }
                guard now &- state.since >= idleFor else { return false }
                state.since = now
                return true
            }
            if due { send() }
        }
    }
}

/// Sends the keepalive of the raw and authenticated framings (`KeepalivePacket`), sealed as data
/// is, one per inner address of the client's TUN device (so the relay refreshes each return path),
/// or one without a source when the device has none (the NAT mapping is kept all the same).
public final class KeepaliveSender: @unchecked Sendable {
    // Used only from the housekeeping thread.
    private var sealer: any PacketSealer
    private var buffer = [UInt8](repeating: 0, count: 512)
    private let headroom: Int
    private let socket: any DatagramSocket
    private let relay: SocketAddress
    private let counters: TunnelCounters
    private let innerAddresses: @Sendable () -> [IPAddress]
    public static let maximumSources = 8

    public init(
        framing: any Framing, socket: any DatagramSocket, relay: SocketAddress, counters: TunnelCounters,
        innerAddresses: @escaping @Sendable () -> [IPAddress]
    ) {
        sealer = framing.makeSealer()
        headroom = framing.headroom
        self.socket = socket
        self.relay = relay
        self.counters = counters
        self.innerAddresses = innerAddresses
    }

    /// Sends the keepalives now; returns how many left.
    @discardableResult
    public func send() -> Int {
        let usable = innerAddresses().filter(PacketPolicy.canReceiveReplies)
        let sources = usable.isEmpty ? [IPAddress.unspecified(like: relay.ip)] : Array(usable.prefix(Self.maximumSources))
        var sent = 0
        for source in sources {
            let headroom = headroom
            var span = buffer.mutableSpan
            guard let packet = KeepalivePacket.write(into: &span, at: headroom, from: source),
                let datagram = sealer.seal(&span, packet: packet, session: PeerSession())
            else { continue }
            if (try? socket.send(buffer.span.extracting(datagram), to: relay)) != nil {
                counters.controlSent[ControlMessage.keepalive.rawValue].add(1)
                sent += 1
            }
        }
        return sent
    }
}
