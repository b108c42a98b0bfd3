// HardeningRegressionTests.swift — regression tests for what fuzzing and the hardening review found in
// the Server module's request decoding (fuzz/Sources/FuzzRequests drives the same pure functions).
//
// 1. An error message quoted an attacker-chosen env key in full: `{"env":{"<1 MiB key>":1}}` answered
//    with a 1 MiB error (and log line). Keys are now clipped.
// 2. Router.clip bounded Characters, not bytes: one Character can carry any number of combining marks,
//    so a "200 character" clip could still be megabytes. It is now bounded in UTF-8 bytes.

import XCTest
import Server

final class HardeningRegressionTests: XCTestCase {
    enum Body { case start, run, signal }

    /// (status, code) of the rejection, or (0, "") when accepted; traps on an unbounded error message.
    private func decode(_ kind: Body, _ json: String) -> (Int, String) {
        do {
            switch kind {
            case .start: _ = try RequestDecoding.start(Array(json.utf8))
            case .run: _ = try RequestDecoding.start(Array(json.utf8), forRun: true)
            case .signal: _ = try RequestDecoding.signal(Array(json.utf8))
            }
            return (0, "")
        } catch let e as APIError {
            precondition(e.message.utf8.count <= 1024, "unbounded error message: \(e.message.utf8.count) bytes")
            return (e.status, e.code)
        } catch {
            XCTFail("non-API error \(error)")
            return (-1, "")
        }
    }

    func testHugeEnvKeyGivesABoundedError() {
        let key = String(repeating: "K", count: 1 << 20)
        // decode traps when an error message exceeds 1 KiB; reaching the assertion is the test.
        XCTAssertEqual(decode(.start, "{\"command\":\"x\",\"env\":{\"\(key)\":1}}").1, "INVALID_REQUEST")
        XCTAssertEqual(decode(.run, "{\"command\":\"x\",\"env\":{\"\(key)=\":\"v\"}}").1, "INVALID_REQUEST")
    }

    func testCombiningMarksCannotInflateAClippedMessage() {
        let name = "a" + String(repeating: "\u{0301}", count: 100_000)   // one Character, 200 KB
        XCTAssertEqual(decode(.start, "{\"command\":\"x\",\"env\":{\"\(name)\":2}}").1, "INVALID_REQUEST")
        XCTAssertEqual(decode(.start, "{\"command\":\"x\",\"user\":\"\(name)\",\"name\":\"\(name)/\"}").1, "INVALID_REQUEST")
        guard case .failure(let e) = Router.route(method: "GET", path: "/api/v1/nope/" + name) else { return XCTFail("routed") }
        XCTAssertEqual(e.status, 404)
        XCTAssertLessThanOrEqual(e.message.utf8.count, 1024)
        XCTAssertLessThanOrEqual(Router.clip(name).utf8.count, 204)
    }

    func testValidBodiesAreAccepted() {
        XCTAssertEqual(decode(.start, "{\"command\":\"sh\",\"args\":[\"-c\",\"true\"],\"env\":{\"A\":\"b\"}}").0, 0)
        XCTAssertEqual(decode(.run, "{\"command\":\"true\",\"timeout\":1.5}").0, 0)
        XCTAssertEqual(decode(.signal, "{\"signal\":15}").0, 0)
        XCTAssertEqual(decode(.signal, "{\"signal\":65}").1, "INVALID_SIGNAL")
        XCTAssertEqual(decode(.run, "{\"command\":\"true\",\"name\":\"x\"}").1, "INVALID_REQUEST")
    }
}
