import Glibc
import WireFormat

extension WireFormat.Clock {
    /// Sleeps the calling thread for `nanoseconds`, resuming after signals until the time is up.
    public static func sleep(nanoseconds: UInt64) {
        var request = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        var remaining = timespec()
        _ = try? Syscall.call("nanosleep") {
            let status = nanosleep(&request, &remaining)
            if status != 0 { request = remaining }  // interrupted: go on with the time left, not anew
            return status
        }
    }
}
