import XCTest
@testable import Sharding

final class ShardingFunctionTests: XCTestCase {
    /// PgCat's src/sharding.rs vector (5 shards), which matches Postgres PARTITION BY HASH on a bigint.
    func testPgBigintHashMatchesPgCatAndPostgres() {
        let expected: [Int: [Int64]] = [
            0: [1, 4, 5, 14, 19, 39, 40, 46, 47, 53],
            1: [2, 3, 11, 17, 21, 23, 30, 49, 51, 54],
            2: [6, 7, 15, 16, 18, 20, 25, 28, 34, 35],
            3: [8, 12, 13, 22, 29, 31, 33, 36, 41, 43],
            4: [9, 10, 24, 26, 27, 32, 37, 38, 42, 45],
        ]
        for (shard, keys) in expected {
            for key in keys {
                XCTAssertEqual(Sharder.pgBigintHash.shard(of: key, shards: 5), shard, "key \(key)")
            }
        }
    }

    /// PgCat's sha1 vector: 12 shards, keys 0..19.
    func testSHA1MatchesPgCat() {
        let expected = [4, 7, 8, 3, 6, 0, 0, 10, 3, 11, 1, 7, 4, 4, 11, 2, 5, 0, 8, 3]
        XCTAssertEqual((0..<20).map { Sharder.sha1.shard(of: Int64($0), shards: 12) }, expected)
    }

    func testNegativeAndExtremeKeysAndOneShard() {
        for key: Int64 in [-1, Int64.min, Int64.max, 0] {
            XCTAssertLessThan(Sharder.pgBigintHash.shard(of: key, shards: 3), 3)
            XCTAssertEqual(Sharder.pgBigintHash.shard(of: key, shards: 1), 0)
            XCTAssertLessThan(Sharder.sha1.shard(of: key, shards: 7), 7)
        }
    }
}
