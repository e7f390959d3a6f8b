import KernelIO
import Synchronization
import WireFormat

/// What the periodic echoes and the received signalling tell about each GTP-U peer, shared between
/// the receiving worker (which records responses and Error Indications) and housekeeping (which
/// sends requests and reports). Touched per signalling message only, never per G-PDU.
public final class GTPUPathMonitor: Sendable {
    public struct PathState: Sendable, Equatable {
        /// Echo Requests sent in a row that no response answered.
        public var unanswered = 0
        public var isDown = false
        public var downEvents = 0
        /// The last round trip, in nanoseconds.
        public var roundTrip: UInt64?
        var pending: (sequence: UInt16, sentAt: UInt64)?

        public static func == (lhs: PathState, rhs: PathState) -> Bool {
            lhs.unanswered == rhs.unanswered && lhs.isDown == rhs.isDown && lhs.downEvents == rhs.downEvents
                && lhs.roundTrip == rhs.roundTrip && lhs.pending?.sequence == rhs.pending?.sequence
        }
    }

    /// Requests in a row without an answer before a path counts as down.
    public static let missedForDown = 3
    /// Paths remembered at most (a relay echoes its active clients); beyond, new peers are not tracked.
    public static let maximumPaths = 4096
    /// Error Indications waiting for housekeeping at most; beyond, a new one replaces a random one.
    public static let maximumPendingRejections = 64

    /// An Error Indication that named one of our TEIDs (one we send with), from `peer`: whether it is
    /// acted on is housekeeping's decision (the relay: only from the endpoint the session uses).
    public struct Rejection: Sendable, Equatable {
        public var teid: UInt32
        public var peer: SocketAddress

        public init(teid: UInt32, peer: SocketAddress) {
            self.teid = teid
            self.peer = peer
        }
    }

    private struct State {
        var paths: [SocketAddress: PathState] = [:]
        var nextSequence: UInt16 = 1
        /// Received since housekeeping last looked; bounded, drained every second.
        var pendingRejections: [Rejection] = []
        /// Our TEIDs that were acted on (at most one per session: only our own TEIDs get here).
        var rejectedTEIDs: Set<UInt32> = []
        var ignoredRejections: UInt64 = 0
        /// Picks which pending one a new one replaces when the queue is full (xorshift: no syscall).
        var replacement: UInt64 = 0x9E37_79B9_7F4A_7C15
    }
    private let state = Locked(State())

    public init() {}

    public var paths: [SocketAddress: PathState] { state.withLock { $0.paths } }
    /// Our TEIDs that a peer's Error Indication named and that were acted on (the peer does not know the session).
    public var rejectedTEIDs: Set<UInt32> { state.withLock { $0.rejectedTEIDs } }

    /// What reports and metrics show of the paths, at one instant.
    public struct Summary: Sendable, Equatable {
        public var pathsDown = 0
        public var downEvents = 0
        /// The shortest last round trip over the paths (nanoseconds), nil before any.
        public var shortestRoundTrip: UInt64?
        public var rejectedTEIDs = 0
        /// Error Indications naming our TEIDs that were not acted on: from an endpoint the session
        /// does not use, or more than housekeeping keeps between two looks.
        public var ignoredRejections: UInt64 = 0
    }

    public var summary: Summary {
        state.withLock { state in
            Summary(
                pathsDown: state.paths.values.filter(\.isDown).count,
                downEvents: state.paths.values.reduce(0) { $0 + $1.downEvents },
                shortestRoundTrip: state.paths.values.compactMap(\.roundTrip).min(),
                rejectedTEIDs: state.rejectedTEIDs.count, ignoredRejections: state.ignoredRejections)
        }
    }

    /// Records a request about to be sent to `peer` at `now`; returns its sequence number, and
    /// whether the path just went down (the requests before it went unanswered).
    public func sending(to peer: SocketAddress, at now: UInt64) -> (sequence: UInt16, wentDown: Bool) {
        state.withLock { state in
            let sequence = state.nextSequence
            state.nextSequence &+= 1
            if state.paths[peer] == nil, state.paths.count >= Self.maximumPaths { return (sequence, false) }
            var path = state.paths[peer] ?? PathState()
            if path.pending != nil { path.unanswered += 1 }
            var wentDown = false
            if path.unanswered >= Self.missedForDown, !path.isDown {
                path.isDown = true
                path.downEvents += 1
                wentDown = true
            }
            path.pending = (sequence, now)
            state.paths[peer] = path
            return (sequence, wentDown)
        }
    }

    /// Records an Echo Response from `peer`; returns true when it brought its path back up.
    @discardableResult
    public func responded(from peer: SocketAddress, sequence: UInt16?, at now: UInt64) -> Bool {
        state.withLock { state in
            guard var path = state.paths[peer] else { return false }
            if let pending = path.pending, sequence == nil || sequence == pending.sequence {
                path.roundTrip = now &- pending.sentAt
                path.pending = nil
            }
            path.unanswered = 0
            let cameBack = path.isDown
            path.isDown = false
            state.paths[peer] = path
            return cameBack
        }
    }

    /// Records an Error Indication from `peer` naming our `teid`, for housekeeping to judge. A
    /// repeat of a pending one is not kept twice; when the queue is full a random pending one gives
    /// way (counted as ignored), so a flood can delay a genuine one but never switch the recording off.
    public func rejected(teid: UInt32, from peer: SocketAddress) {
        let rejection = Rejection(teid: teid, peer: peer)
        state.withLock { state in
            guard !state.pendingRejections.contains(rejection) else { return }
            if state.pendingRejections.count < Self.maximumPendingRejections {
                state.pendingRejections.append(rejection)
            } else {
                state.replacement ^= state.replacement << 13
                state.replacement ^= state.replacement >> 7
                state.replacement ^= state.replacement << 17
                state.pendingRejections[Int(state.replacement % UInt64(state.pendingRejections.count))] = rejection
                state.ignoredRejections += 1
            }
        }
    }

    /// The Error Indications received since the last call (housekeeping's, once a second).
    public func takeRejections() -> [Rejection] {
        state.withLock { state in
            defer { state.pendingRejections.removeAll(keepingCapacity: true) }
            return state.pendingRejections
        }
    }

    /// Housekeeping's verdict on one taken by `takeRejections`.
    public func judged(_ rejection: Rejection, actedOn: Bool) {
        state.withLock { state in
            if actedOn { state.rejectedTEIDs.insert(rejection.teid) } else { state.ignoredRejections += 1 }
        }
    }
}

/// GTP-U framing (TS 29.281) for a RAN node (the client: one session, uplink G-PDUs to the UPF) or a
/// UPF (the relay: static sessions by uplink TEID, replies with each session's downlink TEID).
/// G-PDUs carry a PDU Session Container with the QoS flow id unless turned off; Echo Requests are
/// answered, G-PDUs for unknown TEIDs draw an Error Indication, End Markers are counted, and an
/// extension that must be understood but is not draws a Supported Extension Headers Notification.
/// How many of these replies go out is the engine's reply budget (`ReplyBudget`: per source and in
/// total), as anyone can send what draws them.
public struct GTPUFraming: Framing {
    public enum Role: Sendable {
        /// The RAN node: sends with `uplinkTEID`, accepts G-PDUs for `downlinkTEID`.
        case ran(uplinkTEID: UInt32, downlinkTEID: UInt32)
        /// The UPF: the sessions, by uplink TEID.
        case upf([GTPUSession])
    }

    public let role: Role
    /// The QFI carried in a PDU Session Container on every G-PDU; nil sends none (LTE-style, flags
    /// 0x30). For the UPF, nil means: the QFI of the session's latest uplink G-PDU, none if it sent none.
    public let qfi: UInt8?
    public let sessionContainer: Bool
    /// The address Error Indications name as the GTP-U peer (where the G-PDU arrived).
    public let localAddress: IPAddress
    /// The RAN's UPF: Error Indications from any other address are ignored (nil: from any).
    public let peer: IPAddress?
    public let monitor: GTPUPathMonitor
    /// Shared with the UPF's sealers: each session's latest uplink QFI.
    let uplinkQFIs: QFITable

    public init(
        role: Role, qfi: UInt8?, sessionContainer: Bool = true, localAddress: IPAddress, peer: IPAddress? = nil,
        monitor: GTPUPathMonitor = GTPUPathMonitor()
    ) {
        self.role = role
        self.qfi = qfi
        self.sessionContainer = sessionContainer
        self.localAddress = localAddress
        self.peer = peer
        self.monitor = monitor
        uplinkQFIs = QFITable(sessions: GTPUFraming.sessionCount(role))
    }

    public var name: String { sessionContainer ? "gtp-u (PDU session container)" : "gtp-u" }
    /// 8 + 4 + 4 with a PDU Session Container; 8 without.
    public var overhead: Int { GTPU.gpduHeaderLength(sessionContainer: sessionContainer) }
    public var headroom: Int { overhead }
    public var isAuthenticated: Bool { false }
    public var sessionCount: Int { GTPUFraming.sessionCount(role) }

    static func sessionCount(_ role: Role) -> Int {
        switch role {
        case .ran: 1
        case let .upf(sessions): sessions.count
        }
    }

    public var sessions: [GTPUSession] {
        switch role {
        case let .ran(up, down): [GTPUSession(uplinkTEID: up, downlinkTEID: down, innerSources: [])]
        case let .upf(sessions): sessions
        }
    }

    public func makeSealer() -> any PacketSealer { Sealer(self) }
    public func makeOpener() -> any PacketOpener { Opener(self) }

    /// The latest uplink QFI of each session (0xff: none yet), published with a version so a sealer
    /// re-reads the table only when it changed: one relaxed load per packet.
    final class QFITable: Sendable {
        private let table: Locked<[UInt8]>
        private let version = Atomic<UInt64>(0)

        init(sessions: Int) { table = Locked([UInt8](repeating: 0xff, count: sessions)) }

        var currentVersion: UInt64 { version.load(ordering: .acquiring) }
        var snapshot: [UInt8] { table.withLock { $0 } }

        func record(_ qfi: UInt8, session: Int) {
            table.withLock { table in
                guard table[session] != qfi else { return }
                table[session] = qfi
                version.add(1, ordering: .releasing)
            }
        }
    }

    struct Sealer: PacketSealer {
        let teids: [UInt32]
        let pduType: UInt8
        let fixedQFI: UInt8?
        let sessionContainer: Bool
        let learned: QFITable?
        var learnedVersion: UInt64 = 0
        var learnedQFIs: [UInt8]

        init(_ framing: GTPUFraming) {
            switch framing.role {
            case let .ran(up, _):
                teids = [up]
                pduType = GTPU.PDUType.uplink
                learned = nil
            case let .upf(sessions):
                teids = sessions.map(\.downlinkTEID)
                pduType = GTPU.PDUType.downlink
                learned = framing.qfi == nil ? framing.uplinkQFIs : nil
            }
            fixedQFI = framing.qfi
            sessionContainer = framing.sessionContainer
            learnedQFIs = [UInt8](repeating: 0xff, count: teids.count)
        }

        mutating func seal(_ slot: inout MutableSpan<UInt8>, packet: Range<Int>, session: PeerSession) -> Range<Int>? {
            let headerLength = GTPU.gpduHeaderLength(sessionContainer: sessionContainer)
            let start = packet.lowerBound - headerLength
            guard start >= 0, teids.indices.contains(session.index), packet.count <= 65535 - headerLength else { return nil }
            var qfi = fixedQFI
            if let learned {
                if learned.currentVersion != learnedVersion {
                    learnedVersion = learned.currentVersion
                    learnedQFIs = learned.snapshot
                }
                qfi = learnedQFIs[session.index] == 0xff ? nil : learnedQFIs[session.index]
            }
            // The slot keeps room for the container whatever the QFI: without one the header is 8
            // bytes, written just in front of the packet.
            let container = sessionContainer ? qfi.map { (pduType, $0) } : nil
            let used = GTPU.gpduHeaderLength(sessionContainer: container != nil)
            GTPU.writeGPDUHeader(
                &slot, at: packet.lowerBound - used, payloadLength: packet.count, teid: teids[session.index],
                sessionContainer: container)
            return (packet.lowerBound - used)..<packet.upperBound
        }
    }

    struct Opener: PacketOpener {
        /// Uplink TEID (UPF) or our downlink TEID (RAN) → session index.
        let sessionsByTEID: [UInt32: Int]
        /// The TEIDs we send with (the RAN's uplink one, the UPF's downlink ones): an Error
        /// Indication naming any other is about no session of ours and is not recorded.
        let sendingTEIDs: Set<UInt32>
        /// Where the RAN accepts Error Indications from (its UPF); nil: anywhere.
        let signallingPeer: IPAddress?
        let isUPF: Bool
        let localAddress: IPAddress
        let monitor: GTPUPathMonitor
        let uplinkQFIs: QFITable
        /// Each session's QFI as last recorded by this worker, so the shared table is locked only on a change.
        var recordedQFIs: [UInt8]
        let clock: @Sendable () -> UInt64

        init(_ framing: GTPUFraming, clock: @escaping @Sendable () -> UInt64 = { Clock.monotonicNanoseconds() }) {
            switch framing.role {
            case let .ran(up, down):
                sessionsByTEID = [down: 0]
                sendingTEIDs = [up]
                isUPF = false
            case let .upf(sessions):
                sessionsByTEID = Dictionary(sessions.enumerated().map { ($1.uplinkTEID, $0) }, uniquingKeysWith: { first, _ in first })
                sendingTEIDs = Set(sessions.map(\.downlinkTEID))
                isUPF = true
            }
            signallingPeer = framing.peer
            localAddress = framing.localAddress
            monitor = framing.monitor
            uplinkQFIs = framing.uplinkQFIs
            recordedQFIs = [UInt8](repeating: 0xff, count: framing.sessionCount)
            self.clock = clock
        }

        mutating func open(
            _ slot: inout MutableSpan<UInt8>, datagram: Range<Int>, from peer: SocketAddress,
            reply: inout MutableSpan<UInt8>
        ) -> OpenedDatagram {
            let header: GTPU.Header
            switch GTPU.parse(slot.span, datagram) {
            case let .success(parsed):
                header = parsed
            case .failure(.malformed):
                return .drop(datagram.isEmpty ? .truncated : .badGTPHeader, reply: nil)
            case .failure(.unsupportedExtension):
                let sequence = datagram.count >= 10 ? slot.span.u16(at: datagram.lowerBound + 8) : 0
                let length = GTPU.writeSupportedExtensionHeadersNotification(&reply, sequence: sequence)
                return .drop(.unsupportedExtension, reply: ControlReply(.extensionHeadersNotification, length: length))
            }
            switch header.type {
            case GTPU.MessageType.gpdu:
                guard let session = sessionsByTEID[header.teid] else {
                    let length = GTPU.writeErrorIndication(&reply, teid: header.teid, localAddress: localAddress)
                    // Never more bytes back than came in: a G-PDU too short to carry a packet gets none.
                    guard length <= datagram.count else { return .drop(.unknownTEID, reply: nil) }
                    return .drop(.unknownTEID, reply: ControlReply(.errorIndication, length: length))
                }
                if isUPF, let qfi = header.qfi, header.pduType == GTPU.PDUType.uplink, recordedQFIs[session] != qfi {
                    recordedQFIs[session] = qfi
                    uplinkQFIs.record(qfi, session: session)
                }
                guard !header.content.isEmpty else { return .drop(.truncated, reply: nil) }
                return .forward(header.content, session: PeerSession(index: session))
            case GTPU.MessageType.echoRequest:
                let length = GTPU.writeEchoResponse(&reply, sequence: header.sequence ?? 0)
                return .control(.echoRequest, reply: ControlReply(.echoResponse, length: length))
            case GTPU.MessageType.echoResponse:
                monitor.responded(from: peer, sequence: header.sequence, at: clock())
                return .control(.echoResponse, reply: nil)
            case GTPU.MessageType.errorIndication:
                if let teid = GTPU.errorIndicationTEID(slot.span, header.content), sendingTEIDs.contains(teid),
                    signallingPeer == nil || signallingPeer == peer.ip
                {
                    monitor.rejected(teid: teid, from: peer)
                }
                return .control(.errorIndication, reply: nil)
            case GTPU.MessageType.endMarker:
                return .control(.endMarker, reply: nil)
            case GTPU.MessageType.supportedExtensionHeadersNotification:
                return .control(.extensionHeadersNotification, reply: nil)
            default:
                return .drop(.unexpectedMessage, reply: nil)
            }
        }
    }
}
