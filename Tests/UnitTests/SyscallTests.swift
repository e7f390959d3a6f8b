import Glibc
import Testing

@testable import KernelIO

@Suite("Syscall: errno by name; EBADF and EFAULT stop the process")
struct SyscallTests {
    @Test func codesCompareByName() {
        let error = SystemError("read", code: .wouldBlock)
        #expect(error.code.rawValue == EAGAIN && error.code == SystemError.Code(EWOULDBLOCK))
        let matched =
            switch SystemError.Code(EBUSY) {
            case .permissionDenied, .notPermitted: "permission"
            case .resourceBusy: "busy"
            default: "other"
            }
        #expect(matched == "busy")
        #expect(SystemError("open /x", code: .noSuchFileOrDirectory).description == "open /x: No such file or directory")
    }

    @Test func aNonBlockingCallThatWouldBlockAnswersNil() throws {
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0 && fcntl(ends[0], F_SETFL, O_NONBLOCK) == 0)
        defer { close(ends[0]); close(ends[1]) }
        var byte: UInt8 = 0
        let read = try Syscall.nonBlocking("read") { Glibc.read(ends[0], &byte, 1) }
        #expect(read == nil)
    }

    @Test func otherFailuresAreThrownWithTheirCode() {
        #expect(throws: SystemError.self) {
            _ = try Syscall.call("open") { open("/nonexistent/udptun", O_RDONLY) }
        }
        do {
            _ = try Syscall.call("open") { open("/nonexistent/udptun", O_RDONLY) }
        } catch {
            #expect(error.code == .noSuchFileOrDirectory)
        }
    }

    @Test func aBadDescriptorStopsTheProcess() async {
        await #expect(processExitsWith: .failure) {
            var byte: UInt8 = 0
            _ = try? Syscall.call("read") { read(-1, &byte, 1) }
        }
    }

    @Test func aBadAddressStopsTheProcess() async {
        await #expect(processExitsWith: .failure) {
            var ends: [Int32] = [0, 0]
            _ = pipe(&ends)
            _ = try? Syscall.call("write") { write(ends[1], UnsafeRawPointer(bitPattern: 8), 1) }
        }
    }

    @Test func aClosedStandardStreamIsReportedNotFatal() {
        #expect(throws: SystemError.self) {
            var byte: UInt8 = 0
            _ = try Syscall.onInherited("write") { write(-1, &byte, 1) }
        }
    }
}
