// The files API's pure parts: path validation and resolution, byte ranges, listing order, and the
// mapping of file system errors to API errors (Server/Files.swift).
import XCTest
@testable import Server
import Sys

final class FilesTests: XCTestCase {
    /// The absolute path, or "status CODE".
    private func resolve(_ q: String?, cwd: String = "/srv") -> String {
        switch FilePaths.resolve(query: q, cwd: cwd) {
        case .success(let p): return p.absolute
        case .failure(let e): return "\(e.status) \(e.code)"
        }
    }

    func testPathsAreFormDecodedAndMadeAbsolute() {
        XCTAssertEqual(resolve("path=%2Ftmp%2Fa+b.txt"), "/tmp/a b.txt")
        XCTAssertEqual(resolve("path=/tmp/a%2Bb"), "/tmp/a+b")
        XCTAssertEqual(resolve("x=1&path=rel/f"), "/srv/rel/f")
        XCTAssertEqual(resolve("path=f", cwd: "/"), "/f")
        XCTAssertEqual(resolve("path=%C3%BC"), "/srv/ü")
        XCTAssertEqual(resolve("path=a..b/..c/d.."), "/srv/a..b/..c/d..")   // only a whole `..` component
        XCTAssertEqual(FilePaths.resolve(query: "path=rel", cwd: "/srv").map(\.given).successValue, "rel")
    }

    func testBadPaths() {
        XCTAssertEqual(resolve(nil), "400 INVALID_REQUEST")
        XCTAssertEqual(resolve("path="), "400 INVALID_REQUEST")
        XCTAssertEqual(resolve("other=1"), "400 INVALID_REQUEST")
        XCTAssertEqual(resolve("path=%00"), "400 INVALID_REQUEST")
        XCTAssertEqual(resolve("path=%ZZ"), "400 INVALID_REQUEST")   // malformed escape: no usable path
        for p in ["..", "../x", "/a/../b", "a/..", "/a/..//", "%2E%2E%2Fetc"] {
            XCTAssertEqual(resolve("path=\(p)"), "403 PATH_TRAVERSAL", p)
        }
        XCTAssertEqual(resolve("path=/" + String(repeating: "a", count: 5000)), "400 NAME_TOO_LONG")
    }

    func testSplitAndAncestors() {
        XCTAssertEqual(FilePaths.split("/a/b/c.txt")?.dir, "/a/b")
        XCTAssertEqual(FilePaths.split("/a/b/c.txt")?.name, "c.txt")
        XCTAssertEqual(FilePaths.split("/c")?.dir, "/")
        XCTAssertNil(FilePaths.split("/"))
        XCTAssertNil(FilePaths.split("/a/"))
        XCTAssertNil(FilePaths.split("/a/."))
        XCTAssertEqual(FilePaths.ancestors("/a/b//c/./d"), ["/a", "/a/b", "/a/b/c", "/a/b/c/d"])
        XCTAssertEqual(FilePaths.ancestors("/"), [])
    }

    func testRanges() {
        XCTAssertEqual(ByteRange.parse(nil, size: 10), .whole)
        XCTAssertEqual(ByteRange.parse("bytes=0-0", size: 10), .partial(first: 0, last: 0))
        XCTAssertEqual(ByteRange.parse("bytes=2-", size: 10), .partial(first: 2, last: 9))
        XCTAssertEqual(ByteRange.parse("bytes=2-100", size: 10), .partial(first: 2, last: 9))
        XCTAssertEqual(ByteRange.parse("bytes=-3", size: 10), .partial(first: 7, last: 9))
        XCTAssertEqual(ByteRange.parse("bytes=-30", size: 10), .partial(first: 0, last: 9))
        XCTAssertEqual(ByteRange.parse("BYTES = 1-2", size: 10), .whole)                  // not `bytes=`: ignored
        XCTAssertEqual(ByteRange.parse(" bytes= 1 - 2 ", size: 10), .partial(first: 1, last: 2))
        XCTAssertEqual(ByteRange.parse("items=1-2", size: 10), .whole)
        XCTAssertEqual(ByteRange.parse("bytes=0-1,4-5", size: 10), .whole)
        for bad in ["bytes=10-", "bytes=5-4", "bytes=", "bytes=-", "bytes=-0", "bytes=a-b", "bytes=1-x", "bytes=+1-2",
                    "bytes=99999999999999999999-"] {
            XCTAssertEqual(ByteRange.parse(bad, size: 10), .unsatisfiable, bad)
        }
        XCTAssertEqual(ByteRange.parse("bytes=-1", size: 0), .unsatisfiable)
    }

    func testListingOrderDirectoriesFirstThenBytes() {
        let items: [(String, Bool)] = [("b", false), ("Z", true), ("a", true), ("B", false), ("é", false), ("e", false)]
        let sorted = items.sorted { FilePaths.listingOrder(($0.0, $0.1), ($1.0, $1.1)) }.map(\.0)
        XCTAssertEqual(sorted, ["Z", "a", "B", "b", "e", "é"])
    }

    func testErrorMapping() {
        func m(_ errno: Int32) -> String { let e = fileError(SysError("open", errno: errno), "/p"); return "\(e.status) \(e.code)" }
        XCTAssertEqual(m(File.ENOENT_), "404 NOT_FOUND")
        XCTAssertEqual(m(File.EISDIR_), "400 IS_DIRECTORY")
        XCTAssertEqual(m(File.ENOTDIR_), "400 NOT_A_DIRECTORY")
        XCTAssertEqual(m(File.EACCES_), "403 PERMISSION_DENIED")
        XCTAssertEqual(m(File.EPERM_), "403 PERMISSION_DENIED")
        XCTAssertEqual(m(File.EROFS_), "403 READ_ONLY_FILE_SYSTEM")
        XCTAssertEqual(m(File.ELOOP_), "400 SYMLINK_LOOP")
        XCTAssertEqual(m(File.ENOSPC_), "507 NO_SPACE")
        XCTAssertEqual(m(File.EDQUOT_), "507 NO_SPACE")
        XCTAssertEqual(m(File.ENAMETOOLONG_), "400 NAME_TOO_LONG")
        XCTAssertEqual(m(File.E2BIG_), "413 DIRECTORY_TOO_LARGE")
        XCTAssertEqual(m(5 /* EIO */), "500 IO_ERROR")
        let passthrough = fileError(APIError(400, "X", "y"), "/p")
        XCTAssertEqual(passthrough.code, "X")
    }

    func testRoutes() {
        func r(_ m: String, _ p: String) -> String {
            switch Router.route(method: m, path: p) {
            case .success(.files(let op)): return "\(op)"
            case .success(let other): return "other \(other)"
            case .failure(let e): return "\(e.status)"
            }
        }
        XCTAssertEqual(r("GET", "/api/v1/files"), "read")
        XCTAssertEqual(r("PUT", "/api/v1/files"), "write")
        XCTAssertEqual(r("DELETE", "/api/v1/files"), "delete")
        XCTAssertEqual(r("POST", "/api/v1/files"), "405")
        XCTAssertEqual(r("GET", "/api/v1/files/list"), "list")
        XCTAssertEqual(r("PUT", "/api/v1/files/list"), "405")
        XCTAssertEqual(r("GET", "/api/v1/files/other"), "404")
        XCTAssertEqual(Router.allowed("/api/v1/files"), "GET, PUT, DELETE")
        XCTAssertEqual(Route.files(.write).bodyKind, .file)
        XCTAssertEqual(Route.files(.read).bodyKind, Route.BodyKind.none)
    }
}

private extension Result {
    var successValue: Success? { if case .success(let v) = self { return v } else { return nil } }
}
