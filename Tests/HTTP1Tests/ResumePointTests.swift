// ResumePointTests.swift — where a follow stream resumes (parseResumePoint): Last-Event-ID wins, blank
// means "from the start", `after` from the query, and every malformed number is an error (hardening;
// the same function is fuzzed by fuzz/Sources/FuzzResume).

import XCTest
import HTTP1

final class ResumePointTests: XCTestCase {
    func testHeader() {
        XCTAssertEqual(parseResumePoint(lastEventID: "42", query: nil), .success(42))
        XCTAssertEqual(parseResumePoint(lastEventID: " \t7\t ", query: nil), .success(7))
        XCTAssertEqual(parseResumePoint(lastEventID: "0", query: nil), .success(0))
        XCTAssertEqual(parseResumePoint(lastEventID: "18446744073709551615", query: nil), .success(UInt64.max))
        XCTAssertEqual(parseResumePoint(lastEventID: "", query: "after=5"), .success(nil), "blank header wins and means from the start")
        XCTAssertEqual(parseResumePoint(lastEventID: " \t ", query: nil), .success(nil))
        for bad in ["18446744073709551616", "-1", "1.5", "0x10", "1 2", "abc", "٣"] {
            XCTAssertEqual(parseResumePoint(lastEventID: bad, query: nil), .failure(.invalidLastEventID), bad)
        }
    }

    func testHeaderWinsOverQuery() {
        XCTAssertEqual(parseResumePoint(lastEventID: "3", query: "after=9"), .success(3))
        XCTAssertEqual(parseResumePoint(lastEventID: "x", query: "after=9"), .failure(.invalidLastEventID))
    }

    func testQuery() {
        XCTAssertEqual(parseResumePoint(lastEventID: nil, query: nil), .success(nil))
        XCTAssertEqual(parseResumePoint(lastEventID: nil, query: ""), .success(nil))
        XCTAssertEqual(parseResumePoint(lastEventID: nil, query: "after=17"), .success(17))
        XCTAssertEqual(parseResumePoint(lastEventID: nil, query: "x=1&after=2&after=3"), .success(2), "the first after counts")
        XCTAssertEqual(parseResumePoint(lastEventID: nil, query: "after=%31%32"), .success(12))
        XCTAssertEqual(parseResumePoint(lastEventID: nil, query: "after="), .failure(.invalidAfter))
        XCTAssertEqual(parseResumePoint(lastEventID: nil, query: "after=1+2"), .failure(.invalidAfter))
        XCTAssertEqual(parseResumePoint(lastEventID: nil, query: "after=99999999999999999999"), .failure(.invalidAfter))
        XCTAssertEqual(parseResumePoint(lastEventID: nil, query: "After=3"), .success(nil), "names are case-sensitive")
        // A malformed escape skips that pair (parseQuery), it is not an error.
        XCTAssertEqual(parseResumePoint(lastEventID: nil, query: "after=%zz&after=4"), .success(4))
    }
}
