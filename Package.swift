// swift-tools-version:6.0
// tend: a process-management daemon (tendd) and its CLI (tend).
// Dependencies point one way: tendd -> Server -> {HTTP1, JSON, Supervision, Reactor} -> Sys -> CShims.
// Supervision holds the pure lifecycle machine (ProcessMachine) and the output stores; Server composes
// the components (Connection, ProcessTable, Lifecycle, Persistence, Ownership, ...) on the one loop.
import PackageDescription

let package = Package(
    name: "tend",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "tendd", targets: ["tendd"]),
        .executable(name: "tend", targets: ["tend"]),
        // Hardening: library products so the separate fuzz package (fuzz/, built with -sanitize=fuzzer)
        // can link the parsers, the journal and the pure request decoders (Router, RequestDecoding).
        .library(name: "TendHTTP1", targets: ["HTTP1"]),
        .library(name: "TendJSON", targets: ["JSON"]),
        .library(name: "TendSupervision", targets: ["Supervision"]),
        .library(name: "TendServer", targets: ["Server"]),
    ],
    dependencies: [
        // Used only by the `tend` CLI, never by the daemon.
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .target(name: "CShims", path: "CShims"),
        // libsystemd (sd_listen_fds_with_names, sd_notify, sd_watchdog_enabled); only Sys/Systemd.swift uses it.
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        .target(name: "Sys", dependencies: ["CShims", "CSystemd"]),
        .target(name: "Reactor", dependencies: ["Sys"]),
        .target(name: "HTTP1"),
        .target(name: "JSON"),
        .target(name: "Supervision", dependencies: ["Sys"]),
        .target(name: "Server", dependencies: ["Sys", "Reactor", "HTTP1", "JSON", "Supervision"]),
        // -no-pie: a position-dependent executable needs no load-time relocation of the static Swift
        // runtime's data, so those pages stay clean and shared: about 0.4 MiB less RSS per daemon.
        .executableTarget(name: "tendd", dependencies: ["Server"], linkerSettings: [.unsafeFlags(["-Xlinker", "-no-pie"])]),
        .target(name: "TendClient", dependencies: [
            "HTTP1", "JSON", "Sys",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "tend", dependencies: ["TendClient"]),
        .testTarget(name: "HTTP1Tests", dependencies: ["HTTP1"]),
        .testTarget(name: "JSONTests", dependencies: ["JSON"]),
        .testTarget(name: "SupervisionTests", dependencies: ["Supervision"]),
        .testTarget(name: "SysTests", dependencies: ["Sys", "Reactor"]),
        // Pure tables of the Server module, and (hardening) regression tests for fuzz findings in its request decoding.
        .testTarget(name: "ServerTests", dependencies: ["Server", "Supervision", "JSON"]),
        .testTarget(name: "TendTests", dependencies: ["TendClient", "JSON"]),
    ],
    swiftLanguageModes: [.v5]
)

// perf: release builds skip the dynamic exclusivity checks (debug builds, which the unit tests use, keep
// them): 2.8 % of an /info profile and a part of every loop turn (each access to a class's stored
// property that the compiler cannot prove exclusive). The C shim is C; nothing changes there.
for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
}
