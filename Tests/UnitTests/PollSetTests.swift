import Glibc
import Testing

@testable import KernelIO

@Suite("PollSet: the one poll(2) wrapper")
struct PollSetTests {
    @Test func readinessWakerAndWatch() throws {
        let waker = try Waker()
        let doorbell = try Waker()
        let set = PollSet(capacity: 2, waker: waker)
        let rung = try #require(set.add(doorbell))
        #expect(!set.wait(timeoutMilliseconds: 0), "nothing rang yet")
        doorbell.wake()
        #expect(set.wait(timeoutMilliseconds: 0) && set.isReady(rung) && !set.wasWoken)
        set.watch(rung, false)
        #expect(!set.wait(timeoutMilliseconds: 0), "a position left out is not waited on")
        set.watch(rung, true)
        waker.wake()
        #expect(set.wait(timeoutMilliseconds: 0) && set.isReady(rung) && set.wasWoken)
        #expect(set.add(0) != nil && set.add(0) == nil, "full at its capacity")
        #expect(!set.isReady(-1) && !set.isReady(99))
    }

    @Test func theStackWaitSeesDescriptorAndWakerApart() throws {
        let waker = try Waker()
        let other = try Waker()
        #expect(!waitFor(other.fd, .read, waker: waker, timeoutMilliseconds: 0).isReady)
        other.wake()
        let seen = waitFor(other.fd, .read, waker: waker, timeoutMilliseconds: 0)
        #expect(seen.isReady && !seen.isWoken)
        waker.wake()
        #expect(waitFor(other.fd, .read, waker: waker, timeoutMilliseconds: 0).isWoken)
    }
}
