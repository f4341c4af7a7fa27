import QueryParser
import XCTest
@testable import Sharding

final class AutomaticShardingTests: XCTestCase {
    private let key = AutomaticSharding.Key("data.id")!
    private let shards = 3

    private func decide(_ sql: String, parameters: [Int: Int64] = [:], key: AutomaticSharding.Key? = nil) -> AutomaticSharding.Decision {
        guard case .success(let facts) = QueryParser.parse(sql) else { XCTFail(sql); return .none }
        return AutomaticSharding.decide(facts, key: key ?? self.key, sharder: .pgBigintHash, shards: shards,
                                        parameter: { parameters[$0] })
    }

    private func shard(_ id: Int64) -> Int { Sharder.pgBigintHash.shard(of: id, shards: shards) }

    func testWhereEqualities() {
        XCTAssertEqual(decide("SELECT * FROM data WHERE id = 5"), .shard(shard(5)))
        XCTAssertEqual(decide("SELECT * FROM data WHERE 5 = id"), .shard(shard(5)))
        XCTAssertEqual(decide("SELECT * FROM data d WHERE d.id = 7 AND v = 'x'"), .shard(shard(7)))
        XCTAssertEqual(decide("SELECT * FROM data WHERE data.id = '9'"), .shard(shard(9)))
        XCTAssertEqual(decide("UPDATE data SET v = 'q' WHERE id = 11"), .shard(shard(11)))
        XCTAssertEqual(decide("DELETE FROM data WHERE id = $1", parameters: [1: 12]), .shard(shard(12)))
        XCTAssertEqual(decide("SELECT * FROM data WHERE id = $1"), .none, "parameter not known yet")
        XCTAssertEqual(decide("SELECT * FROM other o JOIN data d ON d.id = 4 WHERE o.x = 1"), .shard(shard(4)))
    }

    func testInListsAndOrOnOneShardOnly() {
        let sameShard = (1...60).map(Int64.init).filter { shard($0) == shard(1) }.prefix(3).map(String.init)
        XCTAssertEqual(decide("SELECT * FROM data WHERE id IN (\(sameShard.joined(separator: ", ")))"), .shard(shard(1)))
        let other = (1...60).map(Int64.init).first { shard($0) != shard(1) }!
        XCTAssertEqual(decide("SELECT * FROM data WHERE id IN (1, \(other))"), .none)
        XCTAssertEqual(decide("SELECT * FROM data WHERE id = 1 OR id = \(other)"), .none)
    }

    func testOtherTablesAndColumnsDoNotCount() {
        XCTAssertEqual(decide("SELECT * FROM other WHERE id = 5"), .none)
        XCTAssertEqual(decide("SELECT * FROM data, other WHERE id = 5"), .none, "unqualified with two tables")
        XCTAssertEqual(decide("SELECT * FROM data WHERE v = '5'"), .none)
        XCTAssertEqual(decide("SELECT * FROM data WHERE id > 5"), .none)
        XCTAssertEqual(decide("SELECT * FROM other WHERE id = 5", key: AutomaticSharding.Key("*.id")), .shard(shard(5)))
    }

    func testInserts() {
        XCTAssertEqual(decide("INSERT INTO data (id, v) VALUES (5, 'a')"), .shard(shard(5)))
        XCTAssertEqual(decide("INSERT INTO data (v, id) VALUES ('a', $2)", parameters: [2: 8]), .shard(shard(8)))
        let other = (1...60).map(Int64.init).first { shard($0) != shard(1) }!
        XCTAssertEqual(decide("INSERT INTO data (id) VALUES (1), (\(other))"),
                       .spansShards([shard(1), shard(other)].sorted()))
        XCTAssertEqual(decide("INSERT INTO data VALUES (1, 'a')"), .none, "no column list: PgCat needs one")
    }

    func testKeyParsing() {
        XCTAssertEqual(AutomaticSharding.Key(#""data"."id""#)?.table, "data")
        XCTAssertNil(AutomaticSharding.Key("id"))
        XCTAssertNil(AutomaticSharding.Key("a.b.c"))
    }

    func testUpdatingTheKeyIsRefused() {
        XCTAssertEqual(decide("UPDATE data SET id = 5 WHERE id = 4"), .updatesKey)
        XCTAssertEqual(decide("UPDATE data SET v = 'x', id = id + 1"), .updatesKey)
        XCTAssertEqual(decide("UPDATE other SET id = 5 WHERE id = 4"), .none)
    }

    func testEachStatementOfATextDecides() {
        let other = (1...60).map(Int64.init).first { shard($0) != shard(1) }!
        let same = (2...90).map(Int64.init).first { shard($0) == shard(1) }!
        XCTAssertEqual(decide("INSERT INTO data (id) VALUES (1); INSERT INTO data (id) VALUES (\(other))"),
                       .statementsSpanShards([shard(1), shard(other)].sorted()))
        XCTAssertEqual(decide("SELECT * FROM data WHERE id = 1; DELETE FROM data WHERE id = \(other)"),
                       .statementsSpanShards([shard(1), shard(other)].sorted()))
        XCTAssertEqual(decide("INSERT INTO data (id) VALUES (1); UPDATE data SET v = 'x' WHERE id = \(same)"), .shard(shard(1)))
        XCTAssertEqual(decide("BEGIN; INSERT INTO data (id) VALUES (1); COMMIT"), .shard(shard(1)), "no key: goes along")
        XCTAssertEqual(decide("SELECT 1; UPDATE data SET id = 2 WHERE id = 1"), .updatesKey)
        XCTAssertEqual(decide("SELECT * FROM data WHERE id = 1; SELECT * FROM data WHERE id = 1 OR id = \(other)"),
                       .shard(shard(1)), "a statement on several shards has no shard of its own, as alone")
    }

    func testAKeyParameterWithoutItsBindWaitsForIt() {
        guard case .success(let facts) = QueryParser.parse("SELECT * FROM data WHERE id = $1"),
              case .success(let insert) = QueryParser.parse("INSERT INTO data (id, v) VALUES ($1, $2)") else {
            return XCTFail("does not parse")
        }
        func decide(_ facts: QueryFacts, bindArrived: Bool) -> AutomaticSharding.Decision {
            AutomaticSharding.decide(facts, key: key, sharder: .pgBigintHash, shards: shards, bindArrived: bindArrived,
                                     parameter: { _ in nil })
        }
        XCTAssertEqual(decide(facts, bindArrived: false), .awaitsBind)
        XCTAssertEqual(decide(insert, bindArrived: false), .awaitsBind)
        XCTAssertEqual(decide(facts, bindArrived: true), .none, "a Bind without a usable value: no key")
        XCTAssertEqual(AutomaticSharding.combine([.awaitsBind, .none]), .awaitsBind)
        XCTAssertEqual(AutomaticSharding.combine([.awaitsBind, .shard(2)]), .shard(2))
        XCTAssertEqual(AutomaticSharding.combine([.shard(1), .none, .shard(2)]), .statementsSpanShards([1, 2]))
        XCTAssertEqual(AutomaticSharding.combine([.shard(1), .spansShards([0, 2])]), .spansShards([0, 2]))
        XCTAssertEqual(AutomaticSharding.combine([]), .none)
    }
}
