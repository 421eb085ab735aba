// swift-tools-version: 6.1
import PackageDescription

// Afterimage: keeps image-generation outputs after the providers delete them.
// Layers (DESIGN §3): C shims -> MicroHTTP / PQ / Curl / S3 (no domain knowledge) -> Afterimage (the
// domain, no C) -> afterimage (commands only).
let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "afterimage",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "afterimage", targets: ["afterimage"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // C shims: headers, module maps and typed wrappers for variadic functions and macros.
        .target(name: "CMicroHTTPD", linkerSettings: [.linkedLibrary("microhttpd")]),
        .target(name: "CLibPQ", linkerSettings: [.linkedLibrary("pq")]),
        .target(name: "CCurl", linkerSettings: [.linkedLibrary("curl")]),

        // Infrastructure modules: know nothing of the domain.
        .target(name: "MicroHTTP", dependencies: ["CMicroHTTPD"], swiftSettings: strict),
        .target(name: "PQ", dependencies: ["CLibPQ"], swiftSettings: strict),
        .target(name: "Curl", dependencies: ["CCurl"], swiftSettings: strict),
        .target(name: "ReadMostly", swiftSettings: strict),
        .target(
            name: "S3",
            dependencies: ["Curl", "ReadMostly", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),

        // The domain, and the executable.
        .target(
            name: "Afterimage",
            dependencies: [
                "MicroHTTP", "PQ", "Curl", "S3", "ReadMostly",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            // The web console, compiled in (see Console/EmbeddedConsole.swift).
            resources: [
                .embedInCode("Console/Files/console.css"), .embedInCode("Console/Files/console.js"),
                .embedInCode("Console/Files/favicon.svg"), .embedInCode("Console/Files/index.html"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "afterimage",
            dependencies: [
                "Afterimage",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),

        // Shared test plumbing: private PostgreSQL / SeaweedFS instances, free ports, env.
        .target(name: "TestSupport", path: "Tests/TestSupport", swiftSettings: strict),
        .testTarget(name: "MicroHTTPTests", dependencies: ["MicroHTTP", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "PQTests", dependencies: ["PQ", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "CurlTests", dependencies: ["Curl", "TestSupport"], swiftSettings: strict),
        .testTarget(
            name: "S3Tests",
            dependencies: ["S3", "Curl", "ReadMostly", "TestSupport"],
            resources: [.copy("Vectors")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "AfterimageTests",
            dependencies: ["Afterimage", "MicroHTTP", "TestSupport", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "Afterimage", "PQ", "S3", "Curl", "MicroHTTP", "TestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
    ]
)
