/// Validation: one failing case per rule, each asserting the key path the problem names.

import XCTest
import Config

final class ValidationTests: XCTestCase {
    private let admin = ["admin_username: admin", "admin_password: secret"]

    func testPoolsAreRequiredAndNonEmpty() {
        assertProblem("general: {admin_username: a, admin_password: b}\n", at: "pools", reason: "is required")
        assertProblem("general: {admin_username: a, admin_password: b}\npools: {}\n", at: "pools",
                      reason: "at least one pool")
    }

    func testEachPoolNeedsUsersAndShards() {
        assertProblem("""
            general: {admin_username: a, admin_password: b}
            pools: {app: {users: [], shards: []}}
            """, at: "pools.app.users", reason: "at least one user")
        assertProblem("""
            general: {admin_username: a, admin_password: b}
            pools: {app: {users: [{username: u, password: p, pool_size: 1}], shards: []}}
            """, at: "pools.app.shards", reason: "at least one shard")
        assertProblem("""
            general: {admin_username: a, admin_password: b}
            pools: {app: {users: [{username: u, password: p, pool_size: 1}]}}
            """, at: "pools.app.shards", reason: "is required")
    }

    func testAdminDatabaseNamesAreReserved() {
        for name in ["pgcat", "pgbouncer"] {
            let yaml = Fixtures.yaml().replacingOccurrences(of: "  app:", with: "  \(name):")
            assertProblem(yaml, at: "pools.\(name)", reason: "admin console")
        }
    }

    func testUserRules() {
        assertProblem(Fixtures.yaml(user: ["password: pw", "pool_size: 5"]), at: "pools.app.users.0.username",
                      reason: "is required")
        assertProblem(Fixtures.yaml(user: ["username: a", "password: pw", "pool_size: 0"]),
                      at: "pools.app.users.0.pool_size", reason: "must be at least 1")
        assertProblem(Fixtures.yaml(user: ["username: a", "password: pw"]), at: "pools.app.users.0.pool_size",
                      reason: "is required")
        assertProblem(Fixtures.yaml(user: ["username: a", "password: pw", "pool_size: 2", "min_pool_size: 3"]),
                      at: "pools.app.users.0.min_pool_size", reason: "must not exceed pool_size")
        assertProblem(Fixtures.yaml(user: ["username: a", "password: pw", "pool_size: 2", "statement_timeout: -1"]),
                      at: "pools.app.users.0.statement_timeout", reason: "0 or more")
        assertProblem(Fixtures.yaml(user: ["username: a", "password: pw", "pool_size: 2", "max_client_connections: -5"]),
                      at: "pools.app.users.0.max_client_connections", reason: "0 or more")
        let duplicate = """
            general: {admin_username: a, admin_password: b}
            pools:
              app:
                users:
                  "0": {username: alice, password: p, pool_size: 1}
                  "1": {username: alice, password: q, pool_size: 1}
                shards: [{database: d, servers: [[h, 5432, primary]]}]
            """
        assertProblem(duplicate, at: "pools.app.users.1.username", reason: "duplicate user 'alice' (also users.0)")
    }

    func testPasswordIsRequiredUnlessTrustOrAuthQuery() throws {
        assertProblem(Fixtures.yaml(user: ["username: a", "pool_size: 1"]), at: "pools.app.users.0.password",
                      reason: "is required")
        _ = try Fixtures.load(Fixtures.yaml(user: ["username: a", "pool_size: 1", "auth_type: trust"]))
        _ = try Fixtures.load(Fixtures.yaml(
            general: admin + ["auth_query: SELECT usename, passwd FROM pg_shadow WHERE usename = $1",
                              "auth_query_user: pgcat", "auth_query_password: pw"],
            user: ["username: a", "pool_size: 1"]))
        _ = try Fixtures.load(Fixtures.yaml(
            general: admin + ["auth_query_user: pgcat", "auth_query_password: pw"],
            pool: ["auth_query: SELECT usename, passwd FROM pg_shadow WHERE usename = $1"],
            user: ["username: a", "pool_size: 1"]))
        // auth_query without its user is not "fully configured".
        assertProblem(Fixtures.yaml(
            general: admin + ["auth_query: SELECT 1", "auth_query_password: pw"],
            user: ["username: a", "pool_size: 1"]), at: "pools.app.users.0.password")
    }

    func testAuthQueryNeedsUserAndPassword() {
        assertProblem(Fixtures.yaml(general: admin + ["auth_query: SELECT 1"]), at: "general.auth_query_user")
        assertProblem(Fixtures.yaml(general: admin + ["auth_query: SELECT 1", "auth_query_user: u"]),
                      at: "general.auth_query_password")
        assertProblem(Fixtures.yaml(pool: ["auth_query: SELECT 1", "auth_query_user: u"]),
                      at: "pools.app.auth_query_password")
    }

    static let md5Hash = "md5" + String(repeating: "0123456789abcdef", count: 2)
    static let scramVerifier = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$"
        + "dTZ1Mmp3NGRqR2xrVzV3N0hqVkx5dTZ1Mmp3NGRqR2w=:dTZ1Mmp3NGRqR2xrVzV3N0hqVkx5dTZ1Mmp3NGRqR2w="

    func testStoredVerifiersMustBeWellFormedAndSuitTheAuthType() throws {
        _ = try Fixtures.load(Fixtures.yaml(user: ["username: a", "password: \(Self.md5Hash)", "pool_size: 1",
                                                   "auth_type: md5"]))
        _ = try Fixtures.load(Fixtures.yaml(user: ["username: a", "password: '\(Self.scramVerifier)'", "pool_size: 1"]))
        _ = try Fixtures.load(Fixtures.yaml(user: ["username: a", "password: md5rocks", "pool_size: 1"]))
        assertProblem(Fixtures.yaml(user: ["username: a", "password: md5abc123", "pool_size: 1", "auth_type: md5"]),
                      at: "pools.app.users.0.password", reason: "32 hex digits")
        assertProblem(Fixtures.yaml(user: ["username: a", "password: 'SCRAM-SHA-256$4096:salt$nope'", "pool_size: 1"]),
                      at: "pools.app.users.0.password", reason: "SCRAM verifier")
        assertProblem(Fixtures.yaml(user: ["username: a", "password: \(Self.md5Hash)", "pool_size: 1"]),
                      at: "pools.app.users.0.password", reason: "md5 hash cannot serve auth_type scram-sha-256")
        assertProblem(Fixtures.yaml(user: ["username: a", "password: '\(Self.scramVerifier)'", "pool_size: 1",
                                           "auth_type: md5"]),
                      at: "pools.app.users.0.password", reason: "cannot serve auth_type md5")
        assertProblem(Fixtures.yaml(general: ["admin_username: admin", "admin_password: \(Self.md5Hash)",
                                              "admin_auth_type: scram-sha-256"]),
                      at: "general.admin_password", reason: "md5 hash")
    }

    func testStoredPasswordClassification() {
        XCTAssertEqual(try StoredPassword.classify("hunter2").get(), .plaintext)
        XCTAssertEqual(try StoredPassword.classify(Self.md5Hash).get(), .md5Hash)
        XCTAssertEqual(try StoredPassword.classify(Self.scramVerifier).get(), .scramVerifier)
        XCTAssertThrowsError(try StoredPassword.classify("SCRAM-SHA-256$0:c2FsdA==$a:b").get())
        XCTAssertThrowsError(try StoredPassword.classify("md5" + String(repeating: "z", count: 32)).get())
    }

    func testShardRules() {
        assertProblem(Fixtures.yaml(shard: ["servers: [[h, 5432, primary]]"]), at: "pools.app.shards.0.database",
                      reason: "is required")
        assertProblem(Fixtures.yaml(shard: ["database: d", "servers: []"]), at: "pools.app.shards.0.servers",
                      reason: "at least one server")
        assertProblem(Fixtures.yaml(shard: ["database: d", "servers: [[h1, 5432, primary], [h2, 5432, primary]]"]),
                      at: "pools.app.shards.0.servers.1", reason: "at most one primary")
        assertProblem(Fixtures.yaml(shard: ["database: d", "servers: [[h1, 5432, primary], [H1, 5432, replica]]"]),
                      at: "pools.app.shards.0.servers.1", reason: "duplicate server")
        assertProblem(Fixtures.yaml(shard: ["database: d", "servers: [{host: h, port: 5432, role: primary, weight: 0}]"]),
                      at: "pools.app.shards.0.servers.0.weight", reason: "at least 1")
        assertProblem(Fixtures.yaml(shard: ["database: d", "servers: [[h, 5432, primary]]", "mirrors: [[m, 5432, 1]]"]),
                      at: "pools.app.shards.0.mirrors.0.mirroring_target_index")
        let sharded = """
            general: {admin_username: a, admin_password: b}
            pools:
              sharded_db:
                users: [{username: u, password: p, pool_size: 1}]
                shards:
                  - {database: s0, servers: [[h, 5432, primary]]}
                  - {database: s1, servers: [[h, 5432, primary], [h, 5432, replica]]}
            """
        assertProblem(sharded, at: "pools.sharded_db.shards.1.servers.1", reason: "duplicate server h:5432")
    }

    func testPortsAreInRange() {
        assertProblem(Fixtures.yaml(general: admin + ["port: 0"]), at: "general.port", reason: "between 1 and 65535")
        assertProblem(Fixtures.yaml(general: admin + ["prometheus_exporter_port: 70000"]),
                      at: "general.prometheus_exporter_port")
        assertProblem(Fixtures.yaml(shard: ["database: d", "servers: [[h, 65536, primary]]"]),
                      at: "pools.app.shards.0.servers.0.port")
    }

    func testTimeoutsAreNotNegative() {
        assertProblem(Fixtures.yaml(general: admin + ["connect_timeout: -1"]), at: "general.connect_timeout")
        assertProblem(Fixtures.yaml(general: admin + ["ban_time: -1"]), at: "general.ban_time")
        assertProblem(Fixtures.yaml(pool: ["idle_timeout: -1"]), at: "pools.app.idle_timeout")
        assertProblem(Fixtures.yaml(user: ["username: a", "password: p", "pool_size: 1", "connect_timeout: -3"]),
                      at: "pools.app.users.0.connect_timeout")
        assertProblem(Fixtures.yaml(general: admin + ["autoreload: 0"]), at: "general.autoreload")
        assertProblem(Fixtures.yaml(general: admin + ["max_message_size: 10"]), at: "general.max_message_size")
    }

    func testDurationsAreAtMostAYear() {
        // (Each of these crashed the process at its first use: a deadline in nanoseconds overflowed.)
        for key in ["connect_timeout", "idle_timeout", "server_lifetime", "healthcheck_delay", "autoreload"] {
            assertProblem(Fixtures.yaml(general: admin + ["\(key): 9223372036854775807"]), at: "general.\(key)",
                          reason: "at most 31536000000 ms")
        }
        assertProblem(Fixtures.yaml(general: admin + ["ban_time: 99999999999"]), at: "general.ban_time",
                      reason: "at most 31536000 seconds")
        assertProblem(Fixtures.yaml(pool: ["server_lifetime: 31536000001"]), at: "pools.app.server_lifetime")
        assertProblem(Fixtures.yaml(user: ["username: a", "password: p", "pool_size: 1", "statement_timeout: 99999999999999"]),
                      at: "pools.app.users.0.statement_timeout")
        assertProblem(Fixtures.yaml(user: ["username: a", "password: p", "pool_size: 4294967297"]),
                      at: "pools.app.users.0.pool_size", reason: "at most 262143")
        XCTAssertNoThrow(try ConfigLoader.parse(yaml: Fixtures.yaml(general: admin + ["idle_timeout: 31536000000",
                                                                                      "ban_time: 31536000"])))
    }

    func testDefaultShard() throws {
        assertProblem(Fixtures.yaml(pool: ["default_shard: shard_1"]), at: "pools.app.default_shard",
                      reason: "does not exist")
        assertProblem(Fixtures.yaml(pool: ["default_shard: first"]), at: "pools.app.default_shard",
                      reason: "shard_<N>, random or random_healthy")
        for value in ["shard_0", "random", "random_healthy"] {
            _ = try Fixtures.load(Fixtures.yaml(pool: ["default_shard: \(value)"]))
        }
    }

    func testRegexesCompileAndCapture() throws {
        assertProblem(Fixtures.yaml(pool: ["sharding_key_regex: '(unclosed'"]), at: "pools.app.sharding_key_regex",
                      reason: "not a valid regular expression")
        assertProblem(Fixtures.yaml(pool: ["shard_id_regex: 'shard_id: \\d+'"]), at: "pools.app.shard_id_regex",
                      reason: "capture group")
        _ = try Fixtures.load(Fixtures.yaml(pool: [#"shard_id_regex: '/\* shard_id: (\d+) \*/'"#]))
    }

    func testAutomaticShardingKey() throws {
        assertProblem(Fixtures.yaml(pool: ["automatic_sharding_key: id"]), at: "pools.app.automatic_sharding_key",
                      reason: "table.column")
        assertProblem(Fixtures.yaml(pool: ["automatic_sharding_key: a.b.c"]), at: "pools.app.automatic_sharding_key")
        _ = try Fixtures.load(Fixtures.yaml(pool: ["automatic_sharding_key: '*.id'"]))
        _ = try Fixtures.load(Fixtures.yaml(pool: ["automatic_sharding_key: '\"data\".\"id\"'"]))
    }

    func testTLSSettings() throws {
        assertProblem(Fixtures.yaml(general: admin + ["tls_certificate: c.pem"]), at: "general.tls_private_key")
        assertProblem(Fixtures.yaml(general: admin + ["tls_private_key: k.pem"]), at: "general.tls_certificate")
        assertProblem(Fixtures.yaml(general: admin + ["client_tls_mode: require"]), at: "general.client_tls_mode",
                      reason: "tls_certificate and tls_private_key")
        let ok = try Fixtures.load(Fixtures.yaml(
            general: admin + ["client_tls_mode: require", "tls_certificate: c.pem", "tls_private_key: k.pem"]))
        XCTAssertEqual(ok.config.general.clientTLSMode, .require)
    }

    func testIOEngineIsEpollUnlessNIOIsAskedForAndNothingElseIsAccepted() throws {
        XCTAssertEqual(try Fixtures.load(Fixtures.yaml(general: admin)).config.general.ioEngine, .epoll)
        XCTAssertEqual(try Fixtures.load(Fixtures.yaml(general: admin + ["io_engine: nio"])).config.general.ioEngine, .nio)
        assertProblem(Fixtures.yaml(general: admin + ["io_engine: kqueue"]), at: "general.io_engine")
    }

    func testAdminCredentials() throws {
        assertProblem(Fixtures.yaml(general: ["admin_password: x"]), at: "general.admin_username")
        assertProblem(Fixtures.yaml(general: ["admin_username: x"]), at: "general.admin_password")
        _ = try Fixtures.load(Fixtures.yaml(general: ["admin_auth_type: trust"]))
    }

    func testPluginsNeedTheQueryParser() throws {
        assertProblem(Fixtures.yaml(pool: ["plugins: {query_logger: {enabled: true}}"]), at: "pools.app.plugins",
                      reason: "query_parser_enabled")
        _ = try Fixtures.load(Fixtures.yaml(pool: ["query_parser_enabled: true", "plugins: {query_logger: {enabled: true}}"]))
        let global = try Fixtures.load(Fixtures.yaml(top: ["plugins: {query_logger: {enabled: true}}"]))
        XCTAssertTrue(global.warnings.contains { $0.hasPrefix("pools.app: ") }, "\(global.warnings)")
    }

    func testDBActivityInitDelay() {
        assertProblem(Fixtures.yaml(pool: ["db_activity_based_routing: true", "db_activity_init_delay: 0"]),
                      at: "pools.app.db_activity_init_delay", reason: "greater than 0")
    }

    func testMLRoutingRules() throws {
        assertProblem(Fixtures.yaml(pool: ["ml_routing: {enabled: true}"]), at: "pools.app.ml_routing.target_tags")
        assertProblem(Fixtures.yaml(pool: ["ml_routing: {inference_pool_size: 0}"]),
                      at: "pools.app.ml_routing.inference_pool_size", reason: "at least 1")
        assertProblem(Fixtures.yaml(pool: ["ml_routing: {affinity_replicas: 0}"]), at: "pools.app.ml_routing.affinity_replicas")
        assertProblem(Fixtures.yaml(pool: ["ml_routing: {queue_max: -1}"]), at: "pools.app.ml_routing.queue_max")
        assertProblem(Fixtures.yaml(pool: ["ml_routing: {queue_timeout: -1}"]), at: "pools.app.ml_routing.queue_timeout")
        assertProblem(Fixtures.yaml(pool: ["ml_routing: {affinity: sticky}"]), at: "pools.app.ml_routing.affinity")
        assertProblem(Fixtures.yaml(pool: ["ml_routing: {models: [{statement_timeout: 5}]}"]),
                      at: "pools.app.ml_routing.models.0.match", reason: "is required")
        assertProblem(Fixtures.yaml(pool: ["ml_routing: {models: [{match: '*', max_connections_per_server: 0}]}"]),
                      at: "pools.app.ml_routing.models.0.max_connections_per_server")
        let untagged = try Fixtures.load(Fixtures.yaml(pool: ["ml_routing: {enabled: true, target_tags: [gpu]}"]))
        XCTAssertTrue(untagged.warnings.contains { $0.hasPrefix("pools.app.ml_routing.target_tags: ") },
                      "\(untagged.warnings)")
    }

    func testValidateOnAConfigBuiltInCode() {
        var user = UserConfig()
        user.username = "u"
        user.password = "p"
        user.poolSize = 0
        var shard = ShardConfig()
        shard.database = "d"
        shard.servers = [ServerConfig(host: "h", port: 5432, role: .primary)]
        var pool = PoolConfig()
        pool.users = [user]
        pool.shards = [shard]
        var general = GeneralConfig()
        general.adminUsername = "a"
        general.adminPassword = "b"
        let config = PgCatConfig(general: general, pools: [NamedPool(name: "app", config: pool)])
        XCTAssertEqual(config.validate(), [ConfigProblem(keyPath: "pools.app.users.0.pool_size", reason: "must be at least 1")])
    }
}
