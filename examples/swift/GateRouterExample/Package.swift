// swift-tools-version:5.9
// A command-line app showing what an iOS app does with GateRouter: the signing key from the
// platform's secure store, a chat and a stream, going offline (backgrounded) and coming
// back, and the flush result. Run by examples/run.sh against the emulator and a collector.
import PackageDescription

let package = Package(
    name: "GateRouterExample",
    platforms: [.macOS(.v12)],
    dependencies: [.package(path: "../../../bindings/swift")],
    targets: [
        .executableTarget(
            name: "gaterouter-example",
            dependencies: [.product(name: "GateRouter", package: "swift")],
            path: "Sources/GateRouterExample"
        ),
    ],
    swiftLanguageVersions: [.v5]
)
