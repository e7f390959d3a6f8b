// swift-tools-version:6.0
import PackageDescription

// The design card's layout: the three programs in Sources/Client, Sources/Relay and Sources/Sink, and
// the code they share in Sources/Shared, one module per job, dependencies one way (each line depends
// only on those above it; no umbrella module, no re-exports):
//   Shared/CLinux, Shared/CAEAD   C shims: kernel headers and calls Swift cannot import; in-place AEAD
//   Shared/WireFormat   the card's common packet-codec module: IP validation, checksums, segmentation,
//                       coalescing, addresses, GTP-U, framings and their crypto, generator payload
//                       (pure functions and values: no system calls; the one lock type, Locked, for
//                       the little state that is shared, such as GTP-U sessions)
//   Shared/WireGuard    the WireGuard protocol as pure values: BLAKE2s, the Noise IKpsk2 handshake,
//                       messages, MACs and cookies, transport seal/open and the replay filter
//   Shared/KernelIO     the kernel: one syscall wrapper, one poll wrapper, owned descriptors, TUN device with its offloads,
//                       UDP sockets and batches, sysctl, privileges, signals, threads, the run lifecycle
//   Shared/Engine       the tunnel: stages, driver, return-path table, policy, counters, housekeeping
//   Shared/Measurement  the generator and the sink's accounting, latency histograms (hdrhistogram-swift)
//   Shared/Monitoring   the Prometheus exposition of those counters (swift-prometheus) and its endpoint
//   Shared/CLI          option groups, role runner, exit codes, reports
//   Client, Relay, Sink the three programs: their options and a few lines
// The command-line layer (CLI and the three programs) is the only user of ArgumentParser.
let package = Package(
    name: "udptun",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "udptun-client", targets: ["Client"]),
        .executable(name: "udptun-relay", targets: ["Relay"]),
        .executable(name: "udptun-sink", targets: ["Sink"]),
        // Test support: the libFuzzer targets (Tests/Fuzz/run.sh) and an LD_PRELOAD malloc counter.
        .executable(name: "udptun-fuzz", targets: ["Fuzz"]),
        .library(name: "AllocationCounter", type: .dynamic, targets: ["AllocationCounter"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0")
    ],
    targets: [
        .target(name: "CLinux", path: "Sources/Shared/CLinux"),
        // In-place ChaCha20-Poly1305 through the BoringSSL that swift-crypto links in (see caead.c).
        .target(name: "CAEAD", path: "Sources/Shared/CAEAD"),
        .target(
            name: "WireFormat", dependencies: ["CAEAD", .product(name: "Crypto", package: "swift-crypto")],
            path: "Sources/Shared/WireFormat"),
        .target(
            name: "WireGuard", dependencies: ["CAEAD", "WireFormat", .product(name: "Crypto", package: "swift-crypto")],
            path: "Sources/Shared/WireGuard"),
        .target(name: "KernelIO", dependencies: ["CLinux", "WireFormat"], path: "Sources/Shared/KernelIO"),
        .target(name: "Engine", dependencies: ["KernelIO", "WireFormat"], path: "Sources/Shared/Engine"),
        .target(
            name: "Measurement",
            dependencies: ["KernelIO", "WireFormat", .product(name: "Histogram", package: "hdrhistogram-swift")],
            path: "Sources/Shared/Measurement"),
        .target(
            name: "Monitoring",
            dependencies: [
                "Engine", "Measurement", "KernelIO", "WireFormat",
                .product(name: "Prometheus", package: "swift-prometheus")
            ],
            path: "Sources/Shared/Monitoring"
        ),
        .target(
            name: "CLI",
            dependencies: [
                "Engine", "Measurement", "Monitoring", "KernelIO", "WireFormat",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser")
            ],
            path: "Sources/Shared/CLI"
        ),
        .executableTarget(name: "Client", dependencies: ["CLI"], path: "Sources/Client"),
        .executableTarget(name: "Relay", dependencies: ["CLI"], path: "Sources/Relay"),
        .executableTarget(name: "Sink", dependencies: ["CLI"], path: "Sources/Sink"),
        // Packet builders and in-memory fakes of the TUN device and the datagram socket.
        .target(name: "TestSupport", dependencies: ["Engine", "KernelIO", "WireFormat"], path: "Tests/TestSupport"),
        .target(name: "AllocationCounter", path: "Tests/AllocationCounter"),
        // libFuzzer targets; Tests/Fuzz/run.sh builds this with -sanitize=fuzzer,address. No CLI code.
        .executableTarget(
            name: "Fuzz",
            dependencies: ["Engine", "Measurement", "Monitoring", "KernelIO", "WireFormat", "WireGuard", "TestSupport"],
            path: "Tests/Fuzz", exclude: ["run.sh", "corpus"]),
        .testTarget(
            name: "UnitTests",
            dependencies: [
                "CLI", "Engine", "Measurement", "Monitoring", "KernelIO", "WireFormat", "WireGuard", "TestSupport",
                .product(name: "Crypto", package: "swift-crypto")
            ],
            path: "Tests/UnitTests"),
        .testTarget(
            name: "EndToEndTests", dependencies: ["CLI", "TestSupport", "CLinux", "WireGuard", "Client", "Relay", "Sink"],
            path: "Tests/EndToEndTests")
    ],
    swiftLanguageModes: [.v6]
)

// Each file imports the modules whose declarations it uses, members included, so its imports are
// its real dependencies.
for target in package.targets where !["CLinux", "CAEAD", "AllocationCounter"].contains(target.name) {
    target.swiftSettings = (target.swiftSettings ?? []) + [.enableUpcomingFeature("MemberImportVisibility")]
}
