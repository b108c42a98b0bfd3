// swift-tools-version:6.0
// tend fuzz targets (libFuzzer). A separate package so that the root package's normal `swift build` /
// `swift test` never sees `LLVMFuzzerTestOneInput` or -sanitize=fuzzer. Build and run with ./run.sh.
import PackageDescription
import Foundation   // manifest only: the root package's identity is its directory's name (the clone may be renamed)

let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

let fuzzFlags: [SwiftSetting] = [.unsafeFlags(["-parse-as-library"])]

func target(_ name: String, _ deps: [String]) -> Target {
    .executableTarget(name: name, dependencies: deps.map { .product(name: $0, package: root) },
                      swiftSettings: fuzzFlags)
}

let package = Package(
    name: "tend-fuzz",
    dependencies: [.package(path: "..")],
    targets: [
        target("FuzzHTTPHead", ["TendHTTP1"]),
        target("FuzzChunked", ["TendHTTP1"]),
        target("FuzzJSON", ["TendJSON"]),
        target("FuzzRequests", ["TendServer", "TendHTTP1", "TendJSON"]),
        target("FuzzResume", ["TendHTTP1"]),
        target("FuzzJournal", ["TendSupervision"]),
        target("FuzzWebSocket", ["TendHTTP1"]),
    ],
    swiftLanguageModes: [.v5]
)
