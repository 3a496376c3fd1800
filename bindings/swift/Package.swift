// swift-tools-version:5.9
// GateRouter for iOS and macOS: the uniffi-generated Swift (generated/GateRouter.swift)
// over the Rust static library packed as GateRouterFFI.xcframework.
// Build the XCFramework first on a Mac: `bash bindings/swift/build-xcframework.sh`,
// then `swift test` here (needs the emulator: `cargo build -p gaterouter-emulator`).
import PackageDescription

let package = Package(
    name: "GateRouter",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "GateRouter", targets: ["GateRouter"]),
    ],
    targets: [
        // Static library + C header + module map (module `GateRouterFFI`), per platform.
        .binaryTarget(name: "GateRouterFFI", path: "GateRouterFFI.xcframework"),
        .target(
            name: "GateRouter",
            dependencies: ["GateRouterFFI"],
            path: "generated",
            exclude: ["GateRouterFFI.h", "GateRouterFFI.modulemap"],
            sources: ["GateRouter.swift"]
        ),
        .testTarget(
            name: "GateRouterTests",
            dependencies: ["GateRouter"],
            path: "Tests/GateRouterTests"
        ),
    ],
    // The generated code targets the Swift 5 language mode.
    swiftLanguageVersions: [.v5]
)
