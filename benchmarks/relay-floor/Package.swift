// swift-tools-version:6.0
import PackageDescription
let package = Package(
    name: "spike",
    dependencies: [.package(url: "https://github.com/apple/swift-nio.git", exact: "2.101.3")],
    targets: [
        .executableTarget(name: "NIORelay", dependencies: [.product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOCore", package: "swift-nio")]),
        .target(name: "CEpoll"),
        .executableTarget(name: "EpollRelay", dependencies: ["CEpoll"]),
        .executableTarget(name: "PipelineRelay", dependencies: ["CEpoll", .product(name: "NIOCore", package: "swift-nio")]),
    ],
    swiftLanguageModes: [.v5]
)
