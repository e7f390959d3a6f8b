import Glibc
import Synchronization
import Testing

@testable import CLI
@testable import KernelIO

@Suite("--cpu: CPU lists and pinned data-plane threads")
struct CPUPinningTests {
    @Test(
        "CPU lists parse as taskset writes them and print folded into ranges",
        arguments: [
            ("0", [0], "0"), ("1,0", [1, 0], "1,0"), ("2-4", [2, 3, 4], "2-4"), ("0,2-3,5", [0, 2, 3, 5], "0,2-3,5"),
            ("3,3,1-3", [3, 1, 2], "3,1-2"), ("1023", [1023], "1023")
        ])
    func parses(text: String, cpus: [Int], printed: String) throws {
        let list = try #require(CPUList(argument: text))
        #expect(list.cpus == cpus)
        #expect(list.description == printed)
    }

    @Test("malformed CPU lists are refused", arguments: ["", ",", "0,", "-1", "1-", "3-1", "a", "0-1-2", "1024", " 1"])
    func refuses(text: String) {
        #expect(CPUList(argument: text) == nil)
    }

    @Test("the allowed set is what sched_getaffinity reports: non-empty, ascending, all online")
    func allowedCPUs() {
        let allowed = CPUAffinity.allowedCPUs()
        #expect(!allowed.isEmpty)
        #expect(allowed == allowed.sorted())
        #expect(allowed.count <= Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    @Test("a pinned worker thread runs only on its CPU; a CPU outside the mask is an error")
    func pinsWorker() throws {
        let target = try #require(CPUAffinity.allowedCPUs().last)
        let pinned = Atomic<Bool>(false)
        let seen = Locked<(mask: [Int], running: Int?)>(([], nil))
        let worker = WorkerThread(name: "pin-test") {
            while !pinned.load(ordering: .acquiring) { usleep(1000) }
            sched_yield()  // the affinity change takes effect at the next scheduling point at the latest
            let mask = CPUAffinity.allowedCPUs()
            let running = CPUAffinity.currentCPU
            seen.withLock { $0 = (mask, running) }
        }
        try worker.pin(to: target)
        pinned.store(true, ordering: .releasing)
        worker.join()
        let result = seen.withLock { $0 }
        #expect(result.mask == [target])
        #expect(result.running == target)

        // The kernel refuses a CPU that does not exist; the error names the call.
        let idle = WorkerThread(name: "pin-refused") {}
        #expect(throws: SystemError.self) { try idle.pin(to: CPUList.maximumCPU) }
        idle.join()
    }
}
