import ArgumentParser

/// A list of CPU numbers as taskset and cpuset write them: "0", "0,2", "2-3", "0,2-3".
public struct CPUList: Equatable, Sendable, CustomStringConvertible, ExpressibleByArgument {
    /// The CPUs in the order given, each once.
    public let cpus: [Int]

    /// Largest CPU number accepted (the kernel's default CPU_SETSIZE is 1024).
    public static let maximumCPU = 1023

    public init(_ cpus: [Int]) { self.cpus = cpus }

    public init?(argument: String) {
        var cpus: [Int] = []
        for part in argument.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count),
                let first = Int(bounds[0]), let last = Int(bounds[bounds.count - 1]),
                0 <= first, first <= last, last <= Self.maximumCPU
            else { return nil }
            for cpu in first...last where !cpus.contains(cpu) { cpus.append(cpu) }
        }
        self.cpus = cpus
    }

    /// Runs of consecutive CPUs folded into ranges: [0, 1, 2, 5] is "0-2,5".
    public var description: String {
        var parts: [String] = []
        var index = 0
        while index < cpus.count {
            var end = index
            while end + 1 < cpus.count, cpus[end + 1] == cpus[end] + 1 { end += 1 }
            parts.append(end == index ? "\(cpus[index])" : "\(cpus[index])-\(cpus[end])")
            index = end + 1
        }
        return parts.joined(separator: ",")
    }

    public static var defaultCompletionKind: CompletionKind { .default }
}
