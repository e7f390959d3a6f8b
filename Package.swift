// swift-tools-version:6.0
import PackageDescription

// Modules by job, dependencies one way (each line depends only on those above it):
//   CLinux, CAEAD   C shims: kernel headers and calls Swift cannot import; in-place AEAD
//   WireFormat      packet formats: IP validation, checksums, segmentation, coalescing, addresses,
//                   encapsulations and their crypto, generator payload (no system calls)
//   KernelIO        the kernel: one syscall helper, owned descriptors, TUN device with its offloads,
//                   UDP sockets and batches, sysctl, privileges, signals, threads, affinity
//   Engine          the tunnel: pipelines, driver, return-path table, policy, counters, housekeeping
//   Measurement     the generator and the sink's accounting
//   Monitoring      the Prometheus exposition of those counters (swift-prometheus) and its HTTP endpoint
//   CLI             option groups, role runner, exit codes, reports (the only user of ArgumentParser)
//   Client, Relay, Sink   the three programs
let package = Package(
    name: "udptun",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "udptun-client", targets: ["Client"]),
        .executable(name: "udptun-relay", targets: ["Relay"]),
        .executable(name: "udptun-sink", targets: ["Sink"]),
        // Test support: the libFuzzer targets (Tests/Fuzz/run.sh) and an LD_PRELOAD malloc counter.
        .executable(name: "udptun-fuzz", targets: ["Fuzz"]),
        .library(name: "AllocationCounter", type: .dynamic, targets: ["AllocationCounter"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        .target(name: "CLinux", path: "Sources/CLinux"),
        // In-place ChaCha20-Poly1305 through the BoringSSL that swift-crypto links in (see caead.c).
        .target(name: "CAEAD", path: "Sources/CAEAD"),
        .target(name: "WireFormat", dependencies: ["CAEAD", .product(name: "Crypto", package: "swift-crypto")],
                path: "Sources/WireFormat"),
        .target(name: "KernelIO", dependencies: ["CLinux", "WireFormat"], path: "Sources/KernelIO"),
        .target(name: "Engine", dependencies: ["KernelIO", "WireFormat"], path: "Sources/Engine"),
        .target(name: "Measurement", dependencies: ["Engine", "KernelIO", "WireFormat"], path: "Sources/Measurement"),
        .target(
            name: "Monitoring",
            dependencies: [
                "Engine", "Measurement", "KernelIO", "WireFormat",
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Sources/Monitoring"
        ),
        .target(
            name: "CLI",
            dependencies: [
                "Engine", "Measurement", "Monitoring", "KernelIO", "WireFormat",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/CLI"
        ),
        .executableTarget(name: "Client", dependencies: ["CLI"], path: "Sources/Client"),
        .executableTarget(name: "Relay", dependencies: ["CLI"], path: "Sources/Relay"),
        .executableTarget(name: "Sink", dependencies: ["CLI"], path: "Sources/Sink"),
        // Packet builders and in-memory fakes of the TUN device and the datagram socket.
        .target(name: "TestSupport", dependencies: ["Engine", "KernelIO", "WireFormat"], path: "Tests/TestSupport"),
        .target(name: "AllocationCounter", path: "Tests/AllocationCounter"),
        // libFuzzer targets; Tests/Fuzz/run.sh builds this with -sanitize=fuzzer,address. No CLI code.
        .executableTarget(name: "Fuzz", dependencies: ["Engine", "Measurement", "Monitoring", "KernelIO", "WireFormat", "TestSupport"],
                          path: "Tests/Fuzz", exclude: ["run.sh", "corpus"]),
        .testTarget(name: "UnitTests",
                    dependencies: ["CLI", "Engine", "Measurement", "Monitoring", "KernelIO", "WireFormat", "TestSupport",
                                   .product(name: "Crypto", package: "swift-crypto")],
                    path: "Tests/UnitTests"),
        .testTarget(name: "EndToEndTests", dependencies: ["CLI", "TestSupport", "CLinux", "Client", "Relay", "Sink"],
                    path: "Tests/EndToEndTests"),
    ],
    swiftLanguageModes: [.v6]
)
