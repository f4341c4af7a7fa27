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
}
