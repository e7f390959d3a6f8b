import KernelIO
import Logging

extension TunDevice {
    /// `bringUp`, for a role: a device that does not become running is worth a warning, not an exit
    /// (the kernel may still start queueing to it later).
    public func bringUp(logger: Logger) throws(Failure) {
        let timeout = 2.0
        if try !bringUp(timeout: timeout) {
            logger.warning("\(name) is up but not running after \(Int(timeout)) s: the kernel drops what it routes into it until it is")
        }
    }
}
