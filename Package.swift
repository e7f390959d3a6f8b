// swift-tools-version:6.0
import PackageDescription

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
    ],
    targets: [
        // Kernel constants and the few syscalls Swift cannot import directly (mmsghdr, ifreq ioctls).
        .target(name: "CLinux", path: "Sources/CLinux"),
        // In-place ChaCha20-Poly1305 through the BoringSSL that swift-crypto links in (see caead.c).
        .target(name: "CAEAD", path: "Sources/CAEAD"),
        .target(
            name: "Shared",
            dependencies: [
                "CLinux",
                "CAEAD",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Sources/Shared"
        ),
        .executableTarget(
            name: "Client",
            dependencies: ["Shared", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Client"
        ),
        .executableTarget(
            name: "Relay",
            dependencies: ["Shared", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Relay"
        ),
        .executableTarget(
            name: "Sink",
            dependencies: ["Shared", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Sink"
        ),
        .target(name: "AllocationCounter", path: "Tests/AllocationCounter"),
        // libFuzzer targets; Tests/Fuzz/run.sh builds this with -sanitize=fuzzer,address.
        .executableTarget(name: "Fuzz", dependencies: ["Shared"], path: "Tests/Fuzz", exclude: ["run.sh", "corpus"]),
        .testTarget(name: "SharedTests", dependencies: ["Shared", .product(name: "Crypto", package: "swift-crypto")],
                    path: "Tests/SharedTests"),
        .testTarget(name: "EndToEndTests", dependencies: ["Shared", "CLinux", "Client", "Relay", "Sink"], path: "Tests/EndToEndTests"),
    ],
    swiftLanguageModes: [.v6]
)
