// swift-tools-version:6.0
import PackageDescription

// Dependency direction (see docs/architecture.md):
// pgcat -> PgCatServer -> Pooler -> {Auth, Config} ; Auth -> PostgresWire ; Pooler -> PostgresWire
// PgCatServer -> EpollTransport (NIOCore only)
let package = Package(
    name: "pgcat-swift",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "pgcat", targets: ["pgcat"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        .target(
            name: "PostgresWire",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")]
        ),
        .target(
            name: "Auth",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .systemLibrary(
            name: "CPgQuery",
            path: "Sources/CPgQuery",
            providers: [.apt(["libpg-query-dev"])]
        ),
        .target(
            name: "QueryParser",
            dependencies: [
                "CPgQuery",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
            ]
        ),
        .target(name: "Failover"),
        .target(name: "MLRouter", dependencies: ["QueryParser"]),
        .target(name: "Sharding", dependencies: [
            "QueryParser", "PostgresWire",
            .product(name: "Crypto", package: "swift-crypto"), .product(name: "NIOCore", package: "swift-nio"),
        ]),
        .target(
            name: "Config",
            dependencies: [.product(name: "Yams", package: "Yams")]
        ),
        .target(
            name: "Pooler",
            dependencies: [
                "PostgresWire", "Auth", "Config", "QueryParser", "Failover", "MLRouter", "Sharding",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The pooler's own epoll event loop and TCP channels (Linux), behind NIO's EventLoop and Channel APIs.
        .target(name: "CEpoll"),
        .target(
            name: "EpollTransport",
            dependencies: [
                "CEpoll",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
            ]
        ),
        .target(
            name: "PgCatServer",
            dependencies: [
                "Pooler", "Config", "PostgresWire", "Auth", "EpollTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .executableTarget(
            name: "pgcat",
            dependencies: [
                "PgCatServer", "Config", "Pooler",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "PostgresWireTests", dependencies: [
            "PostgresWire", .product(name: "NIOCore", package: "swift-nio"),
        ]),
        .testTarget(name: "AuthTests", dependencies: ["Auth"]),
        .testTarget(name: "ConfigTests", dependencies: ["Config"]),
        .testTarget(name: "QueryParserTests", dependencies: ["QueryParser"]),
        .testTarget(name: "FailoverTests", dependencies: ["Failover"]),
        .testTarget(name: "MLRouterTests", dependencies: ["MLRouter", "QueryParser"]),
        .testTarget(name: "ShardingTests", dependencies: [
            "Sharding", "QueryParser", "PostgresWire", .product(name: "NIOCore", package: "swift-nio"),
        ]),
        .testTarget(name: "PoolerTests", dependencies: [
            "Pooler", "PostgresWire", "Config", "Auth", "QueryParser",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "Atomics", package: "swift-atomics"),
        ]),
        .testTarget(name: "EpollTransportTests", dependencies: [
            "EpollTransport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        .testTarget(name: "PgCatServerTests", dependencies: [
            "PgCatServer", "EpollTransport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
    ]
)
