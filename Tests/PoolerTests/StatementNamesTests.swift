/// StatementNames: one server-side name per statement definition, shared by a pool's clients, and bounded.
import NIOCore
import XCTest
@testable import Pooler

final class StatementNamesTests: XCTestCase {
    private func definition(_ sql: String) -> ByteBuffer { ByteBuffer(string: sql + "\0\0\0") }

    func testTheSameDefinitionGetsTheSameNameAndOthersAnotherOne() {
        let names = StatementNames()
        let a = names.name(for: definition("SELECT 1"))
        XCTAssertEqual(names.name(for: definition("SELECT 1")), a)
        XCTAssertNotEqual(names.name(for: definition("SELECT 2")), a)
    }

    func testOnlyAcceptedDefinitionsHaveAValidName() {
        let names = StatementNames()
        let a = names.name(for: definition("SELECT 1"))
        XCTAssertNil(names.validName(for: definition("SELECT 1")))
        names.markValid(a)
        XCTAssertEqual(names.validName(for: definition("SELECT 1")), a)
    }

    func testItStaysBoundedForgettingTheLeastRecentlyUsedAndNeverReusesAName() {
        let names = StatementNames(capacity: 100)
        let kept = names.name(for: definition("SELECT kept"))
        names.markValid(kept)
        var seen: Set<String> = [kept]
        for i in 0..<1_000 {
            let name = names.name(for: definition("SELECT \(i)"))
            XCTAssertTrue(seen.insert(name).inserted, "a name is never given to a second definition")
            _ = names.validName(for: definition("SELECT kept"))  // in use all along
        }
        XCTAssertLessThanOrEqual(names.count, 100)
        XCTAssertEqual(names.validName(for: definition("SELECT kept")), kept, "a statement in use is kept")
        let again = names.name(for: definition("SELECT 0"))
        XCTAssertFalse(seen.contains(again), "a forgotten definition comes back under a fresh name")
        names.markValid("PGCAT_2")  // forgotten: marking it is a no-op, not a resurrection
        XCTAssertNil(names.validName(for: definition("SELECT 0")))
    }

    func testAStaleReportConcernsCopiesCheckedBeforeItOnly() {
        let names = StatementNames()
        let a = names.name(for: definition("SELECT * FROM t"))
        let b = names.name(for: definition("SELECT * FROM u"))
        var cache = ServerStatementCache(capacity: 10)
        _ = cache.insert(a, staleReports: names.staleReports)
        _ = cache.insert(b, staleReports: names.staleReports)
        XCTAssertEqual(names.staleReports, 0)
        names.reportStale(a)
        XCTAssertEqual(names.staleReports, 1)
        XCTAssertTrue(names.reportedStale(a, after: cache.checkedAt(a)!), "prepared before the report")
        XCTAssertFalse(names.reportedStale(b, after: cache.checkedAt(b)!), "another statement")
        cache.markChecked(b, staleReports: names.staleReports)
        XCTAssertEqual(cache.checkedAt(b), 1)
        cache.remove(a)
        _ = cache.insert(a, staleReports: names.staleReports)  // prepared again after the report
        XCTAssertFalse(names.reportedStale(a, after: cache.checkedAt(a)!))
        names.reportStale("PGCAT_999")  // unknown (forgotten) names count, but concern no entry
        XCTAssertEqual(names.staleReports, 2)
        XCTAssertFalse(names.reportedStale(a, after: cache.checkedAt(a)!))
    }

    func testTheServerCacheKeepsAShapePerCopyUntilItIsRemoved() {
        var cache = ServerStatementCache(capacity: 1)
        XCTAssertNil(cache.shape(of: "PGCAT_1"))
        cache.setShape(.noRows, of: "PGCAT_1")
        XCTAssertNil(cache.shape(of: "PGCAT_1"), "no shape for a statement the server does not hold")
        _ = cache.insert("PGCAT_1")
        cache.setShape(.noRows, of: "PGCAT_1")
        XCTAssertEqual(cache.shape(of: "PGCAT_1"), .noRows)
        XCTAssertEqual(cache.insert("PGCAT_2"), "PGCAT_1", "evicted")
        _ = cache.insert("PGCAT_1")
        XCTAssertNil(cache.shape(of: "PGCAT_1"), "prepared again: its shape is not known")
    }
}
