// swift-tools-version: 6.1
import PackageDescription

// Afterimage: keeps image-generation outputs after the providers delete them.
// Layers: Primitives (standard library and Glibc only) and C shims -> MicroHTTP / PQ / Curl / ReadMostly / S3
// (no domain knowledge) -> Afterimage (the domain, no C) -> afterimage (commands only). A target may import
// only what it declares below (scripts/check-imports.py checks every import); what each module may and may
// not import, and why, is in docs/ARCHITECTURE.md, "Modules".
//
// Linux only: the daemon is built on libmicrohttpd's epoll mode, systemd (sd_notify, socket activation,
// credentials) and Glibc, and is built and tested on Debian 12. No other platform is built or claimed.
let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "afterimage",
    products: [
        .executable(name: "afterimage", targets: ["afterimage"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // C shims: headers, module maps and typed wrappers for variadic functions and macros.
        .target(name: "CMicroHTTPD", linkerSettings: [.linkedLibrary("microhttpd")]),
        .target(name: "CLibPQ", linkerSettings: [.linkedLibrary("pq")]),
        .target(name: "CCurl", linkerSettings: [.linkedLibrary("curl")]),

        // The leaf every module may use: civil dates and timestamp text, hex, system calls. It depends on
        // nothing but the standard library and Glibc.
        .target(name: "Primitives", swiftSettings: strict),

        // Infrastructure modules: know nothing of the domain.
        .target(name: "MicroHTTP", dependencies: ["CMicroHTTPD", "Primitives"], swiftSettings: strict),
        .target(name: "PQ", dependencies: ["CLibPQ", "Primitives"], swiftSettings: strict),
        .target(name: "Curl", dependencies: ["CCurl", "Primitives"], swiftSettings: strict),
        .target(name: "ReadMostly", swiftSettings: strict),
        .target(
            name: "S3",
            dependencies: ["Curl", "ReadMostly", "Primitives", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),

        // The domain, and the executable.
        .target(
            name: "Afterimage",
            dependencies: [
                "MicroHTTP", "PQ", "Curl", "S3", "ReadMostly", "Primitives",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "SystemPackage", package: "swift-system"),
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
                "Afterimage", "Primitives",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),

        // Shared test plumbing, one copy each: private PostgreSQL / SeaweedFS instances, free ports, loopback
        // sockets, threads, env (TestSupport); and what needs the domain, a migrated database and signed
        // webhooks (AfterimageTestSupport, in its folder).
        .target(
            name: "TestSupport", dependencies: ["Primitives"], path: "Tests/TestSupport", exclude: ["Afterimage"],
            swiftSettings: strict),
        .target(
            name: "AfterimageTestSupport",
            dependencies: ["Afterimage", "Curl", "TestSupport", .product(name: "Logging", package: "swift-log")],
            path: "Tests/TestSupport/Afterimage",
            swiftSettings: strict
        ),
        .testTarget(name: "PrimitivesTests", dependencies: ["Primitives", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "MicroHTTPTests", dependencies: ["MicroHTTP", "Primitives", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "PQTests", dependencies: ["PQ", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "CurlTests", dependencies: ["Curl", "TestSupport"], swiftSettings: strict),
        .testTarget(
            name: "S3Tests",
            dependencies: ["S3", "Curl", "ReadMostly", "Primitives", "TestSupport", .product(name: "Crypto", package: "swift-crypto")],
            resources: [.copy("Vectors")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "AfterimageTests",
            dependencies: [
                "Afterimage", "MicroHTTP", "PQ", "S3", "Primitives", "TestSupport", "AfterimageTestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "Afterimage", "PQ", "S3", "Curl", "MicroHTTP", "Primitives", "TestSupport", "AfterimageTestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
    ]
)
