import NIOCore
import XCTest
@testable import Pooler

final class PoolerCommandTests: XCTestCase {
    private func parse(_ sql: String) -> PoolerCommand? { PoolerCommand(query: ByteBuffer(string: sql + "\0")) }

    func testPgCatSyntax() {
        XCTAssertEqual(parse("SET SERVER ROLE TO 'primary'"), .setServerRole(.primary))
        XCTAssertEqual(parse("  set server role to 'REPLICA' ; "), .setServerRole(.replica))
        XCTAssertEqual(parse("SET SERVER ROLE TO 'any'"), .setServerRole(.any))
        XCTAssertEqual(parse("SET SERVER ROLE TO 'auto';"), .setServerRole(.auto))
        XCTAssertEqual(parse("SET SERVER ROLE TO 'default'"), .setServerRole(.default))
        XCTAssertEqual(parse("SHOW SERVER ROLE"), .showServerRole)
        XCTAssertEqual(parse("show primary reads;"), .showPrimaryReads)
        XCTAssertEqual(parse("SET PRIMARY READS TO on"), .setPrimaryReads(.on))
        XCTAssertEqual(parse("SET PRIMARY READS TO 'off'"), .setPrimaryReads(.off))
        XCTAssertEqual(parse("set primary reads to default"), .setPrimaryReads(.default))
    }

    func testEverythingElseGoesToPostgres() {
        XCTAssertNil(parse("SET SERVER ROLE TO primary"), "PgCat requires the quotes")
        XCTAssertNil(parse("SET SERVER ROLE TO 'mirror'"))
        XCTAssertNil(parse("SET search_path TO x"))
        XCTAssertNil(parse("SHOW search_path"))
        XCTAssertNil(parse("SELECT 1"))
        XCTAssertNil(parse("SET PRIMARY READS TO maybe"))
        XCTAssertFalse(PoolerCommand.mightMatch(ByteBuffer(string: "INSERT INTO t VALUES (1)")))
        XCTAssertFalse(PoolerCommand.mightMatch(ByteBuffer(string: "SELECT abalance FROM pgbench_accounts")))
        XCTAssertFalse(PoolerCommand.mightMatch(ByteBuffer(string: "SET work_mem TO 1")))
        XCTAssertTrue(PoolerCommand.mightMatch(ByteBuffer(string: "set  server role to 'x'")))
    }

    func testShardingCommands() {
        XCTAssertEqual(parse("SET SHARDING KEY TO '1234'"), .setShardingKey(1234))
        XCTAssertEqual(parse("set sharding key to 7;"), .setShardingKey(7))
        XCTAssertNil(parse("SET SHARDING KEY TO '-1'"), "digits only, as PgCat")
        XCTAssertEqual(parse("SET SHARD TO '2'"), .setShard(2))
        XCTAssertEqual(parse("set shard to any"), .setShard(nil))
        XCTAssertEqual(parse("SET SHARD TO 'ANY'"), .setShard(nil))
        XCTAssertNil(parse("SET SHARD TO 'x'"))
        XCTAssertEqual(parse("SHOW SHARD"), .showShard)
        XCTAssertEqual(parse("show shard;"), .showShard)
    }
}
