import CLinux

/// Which CPUs threads may run on (sched_getaffinity), so `--cpu` can refuse one the process may
/// not use before any thread starts.
public enum CPUAffinity {
    /// The CPUs the calling thread may run on, ascending (for a fresh process: all online CPUs
    /// left to it by taskset or a cgroup's cpuset).
    public static func allowedCPUs() -> [Int] {
        var cpus = [Int32](repeating: 0, count: 4096)
        let count = cpus.withUnsafeMutableBufferPointer { clinux_allowed_cpus($0.baseAddress, Int32($0.count)) }
        return count > 0 ? cpus.prefix(Int(count)).map(Int.init) : []
    }

    /// The CPU the calling thread is running on right now (nil if the kernel cannot say).
    public static var currentCPU: Int? {
        let cpu = clinux_current_cpu()
        return cpu >= 0 ? Int(cpu) : nil
    }
}
