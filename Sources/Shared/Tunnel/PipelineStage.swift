/// One direction of the data plane, moved a batch at a time so that one thread can drive one
/// direction (blocking in it) or both directions (polling their descriptors together).
public protocol PipelineStage: AnyObject {
    /// Readable when `pump` has work.
    var readinessDescriptor: Int32 { get }

    /// Moves at most one batch of what is ready now, without waiting. Returns the packets or
    /// datagrams taken in (0 when nothing was ready), or nil after a fault ended the process
    /// (already reported through `lifecycle.fail`).
    func pump(_ lifecycle: Lifecycle) -> Int?
}

/// A stage's per-thread state, worked on in place (see `WorkStage`).
public protocol PipelineWork {
    var readinessDescriptor: Int32 { get }
    mutating func pump(_ lifecycle: Lifecycle) -> Int?
}

/// The stage the driver sees for one direction's state. All per-thread state lives in one struct,
/// so `pump` takes one exclusivity access per batch and everything inside works on it in place: a
/// class's stored `var`s would each cost a dynamic exclusivity check (a runtime call) per access.
/// The driver reaches stages through `PipelineStage`, so nothing specialises them for the
/// encapsulation at hand; without the `@_specialize`s every batch pays for generic metadata lookups.
public final class WorkStage<Work: PipelineWork>: PipelineStage {
    private var work: Work
    public let readinessDescriptor: Int32

    init(_ work: Work) {
        self.work = work
        readinessDescriptor = work.readinessDescriptor
    }

    @_specialize(where Work == InboundWork<RawEncapsulation>)
    @_specialize(where Work == InboundWork<AuthenticatedEncapsulation>)
    @_specialize(where Work == OutboundWork<RawEncapsulation>)
    @_specialize(where Work == OutboundWork<AuthenticatedEncapsulation>)
    public func pump(_ lifecycle: Lifecycle) -> Int? { work.pump(lifecycle) }
}
