// The child environment composed from the joined base and a start's overrides: same order and
// precedence as the per-start list it replaced (base keys keep their place, later overrides win, new
// keys are appended once, in first-seen order).
import XCTest
@testable import Server

final class ChildEnvironmentTests: XCTestCase {
    func testOverridesReplaceInPlaceAndAppendNewKeys() {
        let env = ChildEnvironment([("PATH", "/bin"), ("HOME", "/root"), ("LANG", "C")])
        XCTAssertEqual(env.compose([]), ["PATH=/bin", "HOME=/root", "LANG=C"])
        XCTAssertEqual(env.compose([("HOME", "/home/u"), ("X", "1"), ("Y", "2"), ("X", "3"), ("LANG", "")]),
                       ["PATH=/bin", "HOME=/home/u", "LANG=", "X=3", "Y=2"])
    }

    func testValueSeesTheLastOverrideThenTheBase() {
        let env = ChildEnvironment([("PATH", "/bin")])
        XCTAssertEqual(env.value("PATH", []), "/bin")
        XCTAssertEqual(env.value("PATH", [("PATH", "/a"), ("PATH", "/b")]), "/b")
        XCTAssertNil(env.value("NOPE", [("OTHER", "x")]))
    }

    func testDuplicateBaseKeyKeepsOneEntryWithTheLastValue() {
        let env = ChildEnvironment([("A", "1"), ("B", "2"), ("A", "3")])
        XCTAssertEqual(env.compose([]), ["A=3", "B=2"])
        XCTAssertEqual(env.value("A", []), "3")
    }

    func testValuesWithEqualsSignsAndEmptyKeysOfTheRequestAreKeptVerbatim() {
        let env = ChildEnvironment([])
        XCTAssertEqual(env.compose([("K", "a=b=c"), ("E", "")]), ["K=a=b=c", "E="])
    }
}
