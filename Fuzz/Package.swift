// swift-tools-version:6.0
// libFuzzer targets for Core's parsers; built and run by Fuzz/run.sh, never by the root package's
// `swift build`. Each target is one file defining LLVMFuzzerTestOneInput; FuzzSupport has what they share.
import PackageDescription

let package = Package(
    name: "chatazure-fuzz",
    platforms: [.macOS(.v13)],
    dependencies: [.package(name: "chatazure-fcgi", path: "..")],
    targets: [.target(name: "FuzzSupport")] + ["FuzzJSONBody", "FuzzSSE", "FuzzMultipart", "FuzzConfig", "FuzzRealtime"].map { name in
        .executableTarget(name: name, dependencies: ["FuzzSupport", .product(name: "Core", package: "chatazure-fcgi")])
    }
)
