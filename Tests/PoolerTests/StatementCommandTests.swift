/// Recognising PREPARE, EXECUTE, DEALLOCATE and DISCARD ALL in Query texts.

import NIOCore
import XCTest
@testable import Pooler

final class StatementCommandTests: XCTestCase {
    private func command(_ sql: String) -> StatementCommand? {
        var buffer = ByteBuffer()
        buffer.writeString(sql)
        buffer.writeInteger(UInt8(0))
        return StatementCommand(query: buffer)
    }

    func testRecognisedCommands() {
        XCTAssertEqual(command("PREPARE q AS SELECT 1"), .prepare("q"))
        XCTAssertEqual(command("prepare Q(int, text) as select $1, $2;"), .prepare("q"))
        XCTAssertEqual(command("PREPARE \"MiXed\" AS SELECT 1"), .prepare("MiXed"))
        XCTAssertEqual(command("  execute q(1, 'a');"), .execute("q"))
        XCTAssertEqual(command("EXECUTE q"), .execute("q"))
        XCTAssertEqual(command("DEALLOCATE PREPARE q"), .deallocate("q"))
        XCTAssertEqual(command("deallocate \"Q\";"), .deallocate("Q"))
        XCTAssertEqual(command("DEALLOCATE ALL"), .deallocateAll)
        XCTAssertEqual(command("DEALLOCATE\r\nALL"), .deallocateAll, "CRLF line ends (one Character in Swift)")
        XCTAssertEqual(command("PREPARE q AS\r\nSELECT 1"), .prepare("q"))
        XCTAssertEqual(command("discard all;"), .discardAll)
    }

    func testOtherStatementsAreNotCommands() {
        XCTAssertNil(command("SELECT 1"))
        XCTAssertNil(command("DELETE FROM t"))
        XCTAssertNil(command("DISCARD PLANS"))
        XCTAssertNil(command("EXPLAIN EXECUTE q"))
        XCTAssertNil(command("PREPARE TRANSACTION 'x'"))  // two-phase commit, not a statement
        XCTAssertNil(command("DEALLOCATE a b"))
    }

    func testCheapPrefilter() {
        var buffer = ByteBuffer()
        buffer.writeString("  \n select 1")
        XCTAssertFalse(StatementCommand.mightMatch(buffer))
        buffer.clear()
        buffer.writeString("\tExecute q")
        XCTAssertTrue(StatementCommand.mightMatch(buffer))
    }
}
