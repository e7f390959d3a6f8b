import KernelIO
import WireFormat

/// How many replies datagrams nobody authenticated may draw (GTP-U Echo Responses, Error
/// Indications and Notifications; ICMP too-big errors of the unauthenticated framings): a few a
/// second per source, and at most `perSecond` in all, across every worker of the process. Anyone can
/// forge a UDP source, so without it the endpoint would answer a flood aimed at a victim's address.
///
/// The total is one token bucket the workers share (replies are rare; a worker refused by it leaves
/// it alone until a token can have come back, so a flood takes its lock about `perSecond` times a
/// second per worker at most). The per-source buckets are each worker's own (`ReplyGate`), in a
/// fixed-size table where a new source takes the place of the stalest in its line: memory is
/// bounded, nothing is ever emptied wholesale, and a flood from made-up sources only costs those
/// sources' own slots. A source whose datagrams reach several workers (several ports) gets the
/// per-source budget on each; the total holds whatever they do.
public final class ReplyBudget: Sendable {
    /// The default of `--reply-rate`.
    public static let defaultPerSecond = 1000
    /// Replies per source per second, after a burst as large.
    public static let perSourcePerSecond: UInt64 = 5
    /// Sources each worker remembers (lines of `ways` slots).
    public static let sourcesPerWorker = 4096
    static let ways = 4

    public let perSecond: UInt64
    let clock: @Sendable () -> UInt64
    private let total: Locked<TokenBucket>

    /// `perSecond` replies a second in all (0: none), after a burst as large; `clock` in nanoseconds.
    public init(
        perSecond: Int = ReplyBudget.defaultPerSecond,
        clock: @escaping @Sendable () -> UInt64 = { Clock.monotonicNanoseconds() }
    ) {
        let rate = UInt64(min(max(perSecond, 0), 1_000_000))
        self.perSecond = rate
        self.clock = clock
        total = Locked(TokenBucket(rate: rate, burst: rate))
    }

    /// One worker's gate.
    public func makeGate() -> ReplyGate { ReplyGate(self) }

    fileprivate func takeShared(now: UInt64) -> Bool { total.withLock { $0.take(now: now) } }
}

/// One worker's view of the reply budget: its per-source buckets and the shared total.
public struct ReplyGate {
    private struct Slot {
        var source: IPAddress?
        var bucket = TokenBucket(rate: ReplyBudget.perSourcePerSecond, burst: ReplyBudget.perSourcePerSecond)
        var usedAt: UInt64 = 0
    }

    private let budget: ReplyBudget
    private var slots: [Slot]
    private let lineMask: Int
    /// Until then the shared total is known to be empty (no lock taken to find out again).
    private var totalEmptyUntil: UInt64 = 0

    init(_ budget: ReplyBudget) {
        self.budget = budget
        slots = [Slot](repeating: Slot(), count: ReplyBudget.sourcesPerWorker)
        lineMask = ReplyBudget.sourcesPerWorker / ReplyBudget.ways - 1
    }

    /// Whether a reply to `source` may go now; a yes has spent its tokens.
    public mutating func allow(to source: IPAddress) -> Bool {
        let now = budget.clock()
        var hasher = Hasher()
        hasher.combine(source)
        let first = (hasher.finalize() & lineMask) * ReplyBudget.ways
        var chosen = first
        for slot in first..<(first + ReplyBudget.ways) {
            if slots[slot].source == source { chosen = slot; break }
            // An empty slot, else the one used longest ago.
            if slots[chosen].source != nil, slots[slot].source == nil || slots[slot].usedAt < slots[chosen].usedAt { chosen = slot }
        }
        if slots[chosen].source != source { slots[chosen] = Slot(source: source) }
        slots[chosen].usedAt = now
        guard slots[chosen].bucket.take(now: now) else { return false }
        guard now >= totalEmptyUntil else { return false }
        guard budget.takeShared(now: now) else {
            totalEmptyUntil = now &+ (budget.perSecond > 0 ? 1_000_000_000 / budget.perSecond : 1_000_000_000)
            return false
        }
        return true
    }
}
