// `tend cp/ls/cat/rm` helpers: operands, the form-encoded route, byte counts.
import XCTest
@testable import TendClient

final class FilesCommandTests: XCTestCase {
    func testOperands() {
        XCTAssertEqual(CopyOperand(":/tmp/x"), .remote("/tmp/x"))
        XCTAssertEqual(CopyOperand(":rel"), .remote("rel"))
        XCTAssertEqual(CopyOperand("./x:y"), .local("./x:y"))
        XCTAssertEqual(CopyOperand("-"), .local("-"))
    }

    func testFilesPathIsFormEncoded() {
        XCTAssertEqual(filesPath("/tmp/a b+c"), "/api/v1/files?path=%2Ftmp%2Fa%20b%2Bc")
        XCTAssertEqual(filesPath("/tmp", list: true), "/api/v1/files/list?path=%2Ftmp")
        XCTAssertEqual(filesPath("é&x=1"), "/api/v1/files?path=%C3%A9%26x%3D1")
    }

    func testHumanBytes() {
        XCTAssertEqual(sizeText(0), "0 B")
        XCTAssertEqual(sizeText(1023), "1023 B")
        XCTAssertEqual(sizeText(1536), "1.5 KiB")
        XCTAssertEqual(sizeText(256 << 20), "256.0 MiB")
        XCTAssertEqual(sizeText(10 << 30), "10.0 GiB")
    }
}
