import CLI
import KernelIO
import Testing

/// KernelIO states what failed; the CLI layer adds the fix in the programs' terms (flags, deploy
/// scripts), and the printed texts stay as they were.
@Suite("Set-up failures: facts from KernelIO, advice from the CLI")
struct SetUpAdviceTests {
    static let failures: [TunDevice.Failure] = [
        .noTunDriver, .tunNodeNotAccessible, .permissionDenied("tun9"), .busy("tun9"),
        .wrongKind("tun9", multiQueue: true), .wrongKind("tun9", multiQueue: false),
        .cannotConfigure("tun9", .setMTU(1400)), .cannotConfigure("tun9", .bringUp), .badName("a/b")
    ]

    @Test func kernelIOTextsNameNoFlagOrScript() {
        for failure in Self.failures {
            #expect(
                !failure.description.contains("--") && !failure.description.contains("deploy/")
                    && !failure.description.contains("chmod"), "\(failure.description)")
            #expect(failure.userMessage.hasPrefix(failure.description))
        }
        for failure: Privileges.Failure in [.unknownUser("nobody9"), .notRoot] {
            #expect(!failure.description.contains("--user"))
            #expect(failure.userMessage.contains("--user"))
        }
    }

    @Test func printedTextsAreUnchanged() {
        #expect(
            TunDevice.Failure.busy("tun2").userMessage
                == "TUN device tun2 is busy: another process has it open (stop it, or choose another --tun)")
        #expect(
            TunDevice.Failure.cannotConfigure("tun1", .setMTU(1400)).userMessage
                == "no permission to set its MTU to 1400 on tun1 (needs CAP_NET_ADMIN): run as root, or prepare the device as root beforehand (deploy/host.sh does; ip link set tun1 mtu N up) and pass the same --mtu"
        )
        #expect(
            TunDevice.Failure.wrongKind("tun1", multiQueue: true).userMessage
                == "tun1 exists but is not a multi-queue TUN device, which --queues above 1 needs (a TAP, or a single-queue TUN device?): recreate it with ip link del tun1; ip tuntap add dev tun1 mode tun multi_queue (deploy/host.sh does with TUN_QUEUES=N)"
        )
        #expect(
            TunDevice.Failure.tunNodeNotAccessible.userMessage.hasPrefix(
                "no permission to open /dev/net/tun: run as root or with CAP_NET_ADMIN; to run unprivileged"))
        #expect(Privileges.Failure.unknownUser("nobody9").userMessage == "--user nobody9: no such user")
    }
}
