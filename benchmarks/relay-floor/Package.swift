// swift-tools-version:6.0
import PackageDescription
let package = Package(
    name: "relay-floor",
    dependencies: [.package(url: "https://github.com/apple/swift-nio.git", exact: "2.101.3")],
    targets: [
        .target(name: "RelayGlue", dependencies: [.product(name: "NIOCore", package: "swift-nio")]),
        .executableTarget(name: "NIORelay", dependencies: [
            "RelayGlue", .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOCore", package: "swift-nio"),
        ]),
        .target(name: "CEpoll"),
        .target(name: "LoopbackSockets"),
        .executableTarget(name: "EpollRelay", dependencies: ["CEpoll", "LoopbackSockets"]),
        .executableTarget(name: "PipelineRelay", dependencies: [
            "CEpoll", "LoopbackSockets", "RelayGlue", .product(name: "NIOCore", package: "swift-nio"),
        ]),
    ],
    swiftLanguageModes: [.v5]
)
