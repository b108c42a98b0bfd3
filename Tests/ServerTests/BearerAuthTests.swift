// The bearer check on every request: scheme case-insensitive, token exact (length and bytes).
import XCTest
@testable import Server

final class BearerAuthTests: XCTestCase {
    let token = Array("s3cret-token".utf8)

    func testAcceptsTheTokenWithAnySchemeCase() {
        for h in ["Bearer s3cret-token", "bearer s3cret-token", "BEARER s3cret-token", "bEaReR s3cret-token"] {
            XCTAssertTrue(BearerAuth.matches(h, token: token), h)
        }
    }

    func testRejectsEverythingElse() {
        for h: String? in [nil, "", "Bearer", "Bearer ", "Bearer s3cret-toke", "Bearer s3cret-tokenX", "Bearer S3cret-token",
                           "Basic s3cret-token", "Bearers3cret-token", "Bearer  s3cret-token", "Token s3cret-token",
                           "Bearer s3cret-token\0", String(repeating: "Bearer ", count: 3)] {
            XCTAssertFalse(BearerAuth.matches(h, token: token), String(describing: h))
        }
    }

    func testARepeatedTokenWhoseLengthDiffersByAMultipleOf256IsRejected() {
        let t = Array("ab".utf8)
        XCTAssertTrue(BearerAuth.matches("Bearer ab", token: t))
        XCTAssertFalse(BearerAuth.matches("Bearer " + String(repeating: "ab", count: 129), token: t))
    }

    func testAnEmptyTokenAuthorizesNothing() {
        XCTAssertFalse(BearerAuth.matches("Bearer x", token: []))
    }
}
