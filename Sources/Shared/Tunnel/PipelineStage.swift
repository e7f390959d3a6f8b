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
