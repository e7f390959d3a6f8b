import WireFormat

/// The generator's side of `--measure-rtt`: the reflector's answers to one stream, counted by the
/// thread that reads them. Round trips are measured on the sender's own clock (receive time minus
/// the send time the answer echoes), so no clock is shared with the reflector.
public struct RTTAccounting: Sendable {
    public let streamID: UInt32
    /// Answers are taken only from the generator's target (address and port).
    public let peer: SocketAddress
    public private(set) var histogram = LatencyHistogram()
    /// By the reflector's answer sequence: unique, duplicates, reordered, and the gaps below the
    /// highest answer seen, which are answers lost on the way back.
    public private(set) var answers = SequenceWindow()
    /// Answers that fail the integrity check.
    public private(set) var corrupt: UInt64 = 0
    /// Datagrams from elsewhere, of another stream, or not answers at all.
    public private(set) var ignored: UInt64 = 0
    /// Answers received before their echoed send time: the wall clock stepped back (not recorded).
    public private(set) var clockErrors: UInt64 = 0
    /// The answer the reflector sent last (the highest answer sequence): its counts are the newest.
    private var latest: ProbeAnswer?

    public init(streamID: UInt32, peer: SocketAddress) {
        self.streamID = streamID
        self.peer = peer
    }

    public mutating func record(_ bytes: Span<UInt8>, from source: SocketAddress?, receivedAt wallNanoseconds: UInt64) {
        guard let source, source.port == peer.port, source.ip.unmappingIPv4 == peer.ip.unmappingIPv4 else {
            ignored += 1
            return
        }
        switch ProbeAnswer.decode(bytes) {
        case .other:
            ignored += 1
        case .corrupt:
            corrupt += 1
        case let .answer(answer):
            guard answer.streamID == streamID else {
                ignored += 1
                return
            }
            guard answers.record(answer.answerSequence) != .duplicate else { return }
            if latest == nil || answer.answerSequence > latest!.answerSequence { latest = answer }
            if wallNanoseconds >= answer.sendTimeNanoseconds {
                histogram.record(nanoseconds: wallNanoseconds - answer.sendTimeNanoseconds)
            } else {
                clockErrors += 1
            }
        }
    }

    public var totals: RTTTotals {
        var totals = RTTTotals()
        totals.answers = answers.unique
        totals.duplicates = answers.duplicates
        totals.reordered = answers.reordered
        totals.corrupt = corrupt
        totals.ignored = ignored
        totals.clockErrors = clockErrors
        totals.summary = histogram.summary
        if let latest {
            // As of the reflector's newest answer: probes up to the one it answered were sent, it had
            // received `reflectorReceived` of them and answered `answerSequence + 1`.
            let sent = latest.sequence &+ 1, answered = latest.answerSequence &+ 1
            totals.lossForward = sent > latest.reflectorReceived ? sent - latest.reflectorReceived : 0
            totals.refused = latest.reflectorReceived > answered ? latest.reflectorReceived - answered : 0
            totals.lossBack = answers.lost
        }
        return totals
    }
}

/// The round-trip figures of one generator stream.
public struct RTTTotals: Sendable, Equatable {
    /// Unique answers received (the histogram's count, less `clockErrors`).
    public var answers: UInt64 = 0
    public var duplicates: UInt64 = 0
    /// Answers that arrived after a later one.
    public var reordered: UInt64 = 0
    public var corrupt: UInt64 = 0
    public var ignored: UInt64 = 0
    public var clockErrors: UInt64 = 0
    /// Probes the reflector never received; nil until an answer tells.
    public var lossForward: UInt64?
    /// Probes the reflector received but did not answer (its rate limit); nil until an answer tells.
    public var refused: UInt64?
    /// Answers sent but not received; nil until an answer tells.
    public var lossBack: UInt64?
    public var summary: LatencySummary?

    public init() {}
}
