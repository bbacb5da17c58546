// swift-tools-version: 6.2
import PackageDescription

/// One settings array for every target: Swift 6 mode with strict concurrency (the default of
/// the Swift 6 language mode) and the upcoming features that keep APIs explicit.
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "baton",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "baton", targets: ["baton"]),
        .executable(name: "baton-bench", targets: ["baton-bench"]),
        .library(name: "BatonCore", targets: ["BatonCore"]),
        .library(name: "BatonStore", targets: ["BatonStore"]),
        .library(name: "BatonSQLite", targets: ["BatonSQLite"]),
        .library(name: "BatonPostgres", targets: ["BatonPostgres"]),
        .library(name: "BatonNode", targets: ["BatonNode"]),
        .library(name: "BatonStoreTesting", targets: ["BatonStoreTesting"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // The HTTP API's server (and, in tests, a scripted server for the http stage executor).
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        // Pure: envelope, validation, lifecycle state machine, retry maths, clock. No I/O.
        .target(
            name: "BatonCore",
            swiftSettings: swiftSettings
        ),
        // The JobStore contract every engine implements.
        .target(
            name: "BatonStore",
            dependencies: ["BatonCore"],
            swiftSettings: swiftSettings
        ),
        // Embedded default engine: SQLite in WAL mode through GRDB.
        .target(
            name: "BatonSQLite",
            dependencies: [
                "BatonCore", "BatonStore",
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
        // Multi-node engine: PostgreSQL through postgres-nio (pooled client, LISTEN/NOTIFY).
        .target(
            name: "BatonPostgres",
            dependencies: [
                "BatonCore", "BatonStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The conformance suite that every engine must pass (imported by test targets).
        .target(
            name: "BatonStoreTesting",
            dependencies: ["BatonCore", "BatonStore"],
            swiftSettings: swiftSettings
        ),
        // Worker runtime: claim loop, heartbeats, rescuer, executors, configuration.
        .target(
            name: "BatonNode",
            dependencies: [
                "BatonCore", "BatonStore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "SystemPackage", package: "swift-system",
                         condition: .when(platforms: [.linux])),
            ],
            swiftSettings: swiftSettings
        ),
        // The HTTP face: the API (Hummingbird) over a store, with bearer-token scopes.
        .target(
            name: "BatonAPI",
            dependencies: [
                "BatonCore", "BatonStore", "BatonNode",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            // The OpenAPI document, served at /openapi.json and checked against the routes.
            resources: [.copy("openapi.json")],
            swiftSettings: swiftSettings
        ),
        // The command tree, kept in a library so tests can drive it without a shell.
        .target(
            name: "BatonCLI",
            dependencies: [
                "BatonCore", "BatonStore", "BatonSQLite", "BatonPostgres", "BatonNode", "BatonAPI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "baton",
            dependencies: [
                "BatonCLI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "baton-bench",
            dependencies: [
                "BatonCore", "BatonStore", "BatonSQLite", "BatonPostgres", "BatonNode",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BatonCoreTests",
            dependencies: ["BatonCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BatonStoreTests",
            dependencies: [
                "BatonCore", "BatonStore", "BatonSQLite", "BatonPostgres", "BatonStoreTesting",
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BatonNodeTests",
            dependencies: [
                "BatonCore", "BatonStore", "BatonSQLite", "BatonPostgres", "BatonNode", "BatonCLI", "BatonAPI",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
