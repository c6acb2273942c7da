// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "chatazure-fcgi",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "chatazure-fcgi", targets: ["chatazure-fcgi"]),
        .library(name: "Core", targets: ["Core"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        .systemLibrary(name: "CFastCGI", providers: [.apt(["libfcgi-dev"])]),
        .systemLibrary(name: "CCurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CSQLite", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CPostgres", providers: [.apt(["libpq-dev"])]),
        // The Realtime relay's event loop, over Debian's libwebsockets (libwebsockets-dev).
        .target(name: "CRealtimeRelay", linkerSettings: [.linkedLibrary("websockets")]),
        // Core's layers, lowest first. Each depends on the one below it and re-exports it, and none
        // can import one above it (ARCHITECTURE.md, "Targets").
        // Atomics and a robust process-shared mutex for memory several processes map.
        .target(name: "CSharedMemory"),
        .target(
            name: "GatewayValues",
            dependencies: ["CSharedMemory", .product(name: "Logging", package: "swift-log")]
        ),
        .target(name: "GatewayHTTP", dependencies: ["GatewayValues"]),
        .target(
            name: "GatewayPolicy",
            dependencies: [
                "GatewayHTTP", "CSharedMemory",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The store: one logic over a `StoreConnection`, with SQLite and PostgreSQL drivers.
        .target(name: "GatewayStore", dependencies: ["GatewayPolicy", "CSQLite", "CPostgres"]),
        .target(
            name: "Core",
            dependencies: [
                "GatewayStore",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "chatazure-fcgi",
            dependencies: [
                "Core", "CFastCGI", "CCurl", "CRealtimeRelay",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "CoreTests", dependencies: ["Core", "CSharedMemory", "GatewayValues", "GatewayHTTP", "GatewayPolicy", "GatewayStore"]),
    ]
)
