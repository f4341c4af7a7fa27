/// YAML loading: the reference example, lists vs index maps, server and mirror forms, types and unknown keys.

import XCTest
import Config

final class YAMLLoadingTests: XCTestCase {
    func testReferenceExampleParses() throws {
        let loaded = try Fixtures.load(Fixtures.referenceYAML)
        let config = loaded.config
        XCTAssertEqual(loaded.warnings, [])
        XCTAssertEqual(config.general.port, 6432)
        XCTAssertEqual(config.general.enablePrometheusExporter, true)
        XCTAssertEqual(config.general.autoreload, 15000)
        XCTAssertEqual(config.general.workerThreads, 4)
        XCTAssertEqual(config.general.tlsCertificate, ".circleci/server.cert")
        XCTAssertEqual(config.general.tlsPrivateKey, ".circleci/server.key")
        XCTAssertEqual(config.general.adminUsername, "admin_user")
        XCTAssertEqual(config.general.adminAuthType, .md5)
        XCTAssertEqual(config.pools.map(\.name), ["sharded_db", "simple_db"])

        let plugins = try XCTUnwrap(config.plugins)
        XCTAssertEqual(plugins.prewarmer?.queries, ["SELECT pg_prewarm('pgbench_accounts')"])
        XCTAssertEqual(plugins.tableAccess?.tables, ["pg_user", "pg_roles", "pg_database"])
        XCTAssertEqual(plugins.queryLogger, EnabledPlugin(enabled: false))
        XCTAssertEqual(plugins.intercept?.enabled, true)
        XCTAssertEqual(plugins.intercept?.queries, [InterceptQuery(
            query: "select current_database() as a, current_schemas(false) as b",
            schema: [["a", "text"], ["b", "text"]], result: [["${DATABASE}", "{public}"]])])

        let sharded = try XCTUnwrap(config.pool(named: "sharded_db"))
        XCTAssertEqual(sharded.poolMode, .transaction)
        XCTAssertEqual(sharded.queryParserReadWriteSplitting, true)
        XCTAssertEqual(sharded.idleTimeout, 40000)
        XCTAssertEqual(sharded.connectTimeout, 3000)
        XCTAssertEqual(sharded.users.map(\.username), ["sharding_user", "other_user"])
        XCTAssertEqual(sharded.users[0].poolMode, .transaction)
        XCTAssertEqual(sharded.users[1].poolSize, 21)
        XCTAssertEqual(sharded.users[1].statementTimeout, 15000)
        XCTAssertEqual(sharded.users[1].connectTimeout, 1000)
        XCTAssertEqual(sharded.shards.map(\.database), ["shard0", "shard1", "shard2"])
        for shard in sharded.shards {
            XCTAssertEqual(shard.servers, [
                ServerConfig(host: "127.0.0.1", port: 5432, role: .primary),
                ServerConfig(host: "localhost", port: 5432, role: .replica),
            ])
        }

        let simple = try XCTUnwrap(config.pool(named: "simple_db"))
        XCTAssertEqual(simple.poolMode, .session)
        XCTAssertEqual(simple.defaultRole, .primary)
        XCTAssertEqual(simple.users[0].minPoolSize, 3)
        XCTAssertEqual(simple.users[0].serverLifetime, 60000)
        XCTAssertEqual(simple.shards.count, 1)
    }

    func testListsAndIndexMapsAreEquivalent() throws {
        let asLists = try Fixtures.load(Fixtures.yaml(
            user: ["username: a", "password: pw", "pool_size: 1"],
            shard: ["database: db0", "servers: [[h0, 5432, primary]]"]))
        let asMaps = try Fixtures.load("""
            general: {admin_username: admin, admin_password: secret}
            pools:
              app:
                users:
                  "0": {username: a, password: pw, pool_size: 1}
                shards:
                  0: {database: db0, servers: [[h0, 5432, primary]]}
            """)
        XCTAssertEqual(asLists.config, asMaps.config)
    }

    func testIndexMapsAreSortedNumerically() throws {
        let config = try Fixtures.load("""
            general: {admin_username: admin, admin_password: secret}
            pools:
              app:
                users:
                  "10": {username: ten, password: pw, pool_size: 1}
                  "2": {username: two, password: pw, pool_size: 1}
                shards:
                  "1": {database: one, servers: [[h, 5432, primary]]}
                  "0": {database: zero, servers: [[h, 5432, primary]]}
            """).config
        let pool = try XCTUnwrap(config.pool(named: "app"))
        XCTAssertEqual(pool.users.map(\.username), ["two", "ten"])
        XCTAssertEqual(pool.shards.map(\.database), ["zero", "one"])
    }

    func testShardKeysMustBeContiguousIntegers() {
        let gap = """
            general: {admin_username: admin, admin_password: secret}
            pools:
              app:
                users: [{username: a, password: pw, pool_size: 1}]
                shards:
                  "0": {database: zero, servers: [[h, 5432, primary]]}
                  "2": {database: two, servers: [[h, 5432, primary]]}
            """
        assertProblem(gap, at: "pools.app.shards", reason: "shard 1 is missing")
        let notInteger = gap.replacingOccurrences(of: "\"2\"", with: "two")
        assertProblem(notInteger, at: "pools.app.shards.two", reason: "integers")
    }

    func testServerForms() throws {
        let config = try Fixtures.load(Fixtures.yaml(shard: [
            "database: appdb",
            "servers:",
            "  - [db1, 5432, primary]",
            "  - {host: db2, port: 5433, role: auto, tags: [gpu, a100], weight: 3}",
            "  - {host: db3, port: 5434, role: Replica}",
            "mirrors:",
            "  - [mirror1, 6432, 0]",
            "  - {host: mirror2, port: 6433, mirroring_target_index: 1}",
        ])).config
        let shard = try XCTUnwrap(config.pool(named: "app")?.shards.first)
        XCTAssertEqual(shard.servers, [
            ServerConfig(host: "db1", port: 5432, role: .primary),
            ServerConfig(host: "db2", port: 5433, role: .auto, tags: ["gpu", "a100"], weight: 3),
            ServerConfig(host: "db3", port: 5434, role: .replica),
        ])
        XCTAssertEqual(shard.mirrors, [
            MirrorConfig(host: "mirror1", port: 6432, mirroringTargetIndex: 0),
            MirrorConfig(host: "mirror2", port: 6433, mirroringTargetIndex: 1),
        ])
    }

    func testBadServerEntries() {
        assertProblem(Fixtures.yaml(shard: ["database: d", "servers: [[h, 5432]]"]),
                      at: "pools.app.shards.0.servers.0", reason: "[host, port, role]")
        assertProblem(Fixtures.yaml(shard: ["database: d", "servers: [[h, 5432, leader]]"]),
                      at: "pools.app.shards.0.servers.0.role", reason: "primary, replica, auto")
        assertProblem(Fixtures.yaml(shard: ["database: d", "servers: [{host: h, port: 5432, role: primary, colour: red}]"]),
                      at: "pools.app.shards.0.servers.0.colour", reason: "unknown key")
        assertProblem(Fixtures.yaml(shard: ["database: d", "servers: [{host: h, role: primary}]"]),
                      at: "pools.app.shards.0.servers.0.port", reason: "is required")
        assertProblem(Fixtures.yaml(shard: ["database: d", "servers: [[h, \"5432\", primary]]"]),
                      at: "pools.app.shards.0.servers.0.port", reason: "expected an integer")
    }

    func testLoadBalancingModeSpellings() throws {
        let expected: [(String, LoadBalancingMode)] = [
            ("random", .random), ("loc", .leastOutstandingConnections), ("LOC", .leastOutstandingConnections),
            ("least_outstanding_connections", .leastOutstandingConnections),
        ]
        for (spelling, mode) in expected {
            let config = try Fixtures.load(Fixtures.yaml(pool: ["load_balancing_mode: \(spelling)"])).config
            XCTAssertEqual(config.pool(named: "app")?.loadBalancingMode, mode, spelling)
        }
        assertProblem(Fixtures.yaml(pool: ["load_balancing_mode: fastest"]), at: "pools.app.load_balancing_mode",
                      reason: "one of random, loc, least_outstanding_connections")
    }

    func testTypesAreChecked() {
        assertProblem(Fixtures.yaml(general: ["admin_username: a", "admin_password: b", "port: \"6432\""]),
                      at: "general.port", reason: "expected an integer, found a string ('6432')")
        assertProblem(Fixtures.yaml(general: ["admin_username: a", "admin_password: b", "server_tls: yes"]),
                      at: "general.server_tls", reason: "expected a boolean")
        assertProblem(Fixtures.yaml(user: ["username: a", "password: 12345", "pool_size: 1"]),
                      at: "pools.app.users.0.password", reason: "expected a string, found an integer")
        assertProblem("""
            general: {admin_username: a, admin_password: b}
            pools: {app: {users: 3, shards: [{database: d, servers: [[h, 5432, primary]]}]}}
            """, at: "pools.app.users", reason: "expected a table keyed by index")
        assertProblem(Fixtures.yaml(general: ["admin_username: a", "admin_password: b", "connect_timeout: 1.5"]),
                      at: "general.connect_timeout", reason: "found a float")
    }

    func testAPasswordsValueIsNeverQuotedInAnError() {
        let cases = [
            (Fixtures.yaml(user: ["username: a", "password: 918273", "pool_size: 1"]), "pools.app.users.0.password"),
            (Fixtures.yaml(general: ["admin_username: a", "admin_password: 918273"]), "general.admin_password"),
            (Fixtures.yaml(user: ["username: a", "password: p", "server_password: 918273", "pool_size: 1"]),
             "pools.app.users.0.server_password"),
            (Fixtures.yaml(general: ["admin_username: a", "admin_password: b", "auth_query_password: [918273]"]),
             "general.auth_query_password"),
        ]
        for (yaml, keyPath) in cases {
            let problems = Fixtures.problems(yaml)
            XCTAssertTrue(problems.contains { $0.keyPath == keyPath && $0.reason.hasPrefix("expected a string") },
                          "\(keyPath): \(problems.map(\.description))")
            XCTAssertFalse(problems.contains { $0.description.contains("918273") }, "\(problems.map(\.description))")
        }
    }

    func testUnknownKeysAreErrorsNamingThePath() {
        assertProblem(Fixtures.yaml(general: ["admin_username: a", "admin_password: b", "prot: 6432"]),
                      at: "general.prot", reason: "did you mean 'port'?")
        assertProblem(Fixtures.yaml(pool: ["prepared_statements: true"]), at: "pools.app.prepared_statements",
                      reason: "obsolete")
        assertProblem(Fixtures.yaml(user: ["username: a", "password: pw", "pool_size: 1", "poolsize: 2"]),
                      at: "pools.app.users.0.poolsize", reason: "unknown key")
        assertProblem(Fixtures.yaml(top: ["extra: 1"]), at: "extra", reason: "unknown key")
        assertProblem(Fixtures.yaml(pool: ["ml_routing: {enabled: false, gpu_tags: [x]}"]),
                      at: "pools.app.ml_routing.gpu_tags", reason: "unknown key")
    }

    func testReportsEveryProblemNotJustTheFirst() {
        let problems = Fixtures.problems(Fixtures.yaml(
            general: ["admin_username: a", "admin_password: b", "port: 0", "bogus: 1"],
            user: ["username: a", "password: pw", "pool_size: 0"]))
        XCTAssertEqual(Set(problems.map(\.keyPath)), ["general.port", "general.bogus", "pools.app.users.0.pool_size"])
        XCTAssertTrue(problems.map(\.description).contains("pools.app.users.0.pool_size: must be at least 1"))
    }

    func testYAMLScalarsFollowTheCoreSchema() throws {
        let config = try Fixtures.load(Fixtures.yaml(
            general: ["admin_username: on", "admin_password: \"0755\"", "idle_timeout: 600_000", "host: 127.0.0.1"]
        )).config
        XCTAssertEqual(config.general.adminUsername, "on")
        XCTAssertEqual(config.general.adminPassword, "0755")
        XCTAssertEqual(config.general.idleTimeout, 600_000)
        XCTAssertEqual(config.general.host, "127.0.0.1")
    }

    func testAnchorsAndMergeKeys() throws {
        let merged = try Fixtures.load("""
            general: {admin_username: admin, admin_password: &secret s3cret}
            pools:
              app:
                users:
                  - &base {username: a, password: *secret, pool_size: 4}
                  - {<<: *base, username: b, pool_size: 8}
                shards: [{database: d, servers: [[h, 5432, primary]]}]
            """).config
        let users = try XCTUnwrap(merged.pool(named: "app")?.users)
        XCTAssertEqual(users.map(\.username), ["a", "b"])
        XCTAssertEqual(users.map(\.poolSize), [4, 8])
        XCTAssertEqual(users[1].password, "s3cret")
    }

    func testSyntaxErrorIsReported() {
        let problems = Fixtures.problems("general: {admin_username: a\npools: [")
        XCTAssertEqual(problems.count, 1)
        XCTAssertTrue(problems.first?.reason.contains("YAML syntax error") == true, "\(problems)")
    }

    func testMLRoutingBlock() throws {
        let config = try Fixtures.load(Fixtures.yaml(
            pool: [
                "ml_routing:",
                "  enabled: true",
                "  target_tags: [gpu]",
                "  queue_max: 50",
                "  fallback: replicas",
                "  models:",
                "    - {match: \"meta-llama/*\", statement_timeout: 120000, max_connections_per_server: 1, fallback: error}",
            ],
            shard: ["database: d", "servers: [[h1, 5432, primary], {host: h2, port: 5432, role: replica, tags: [gpu]}]"]
        )).config
        let ml = try XCTUnwrap(config.pool(named: "app")?.mlRouting)
        XCTAssertEqual(ml.enabled, true)
        XCTAssertEqual(ml.targetTags, ["gpu"])
        XCTAssertEqual(ml.queueMax, 50)
        XCTAssertEqual(ml.fallback, .replicas)
        XCTAssertEqual(ml.dedicated, true)
        var model = MLModelOverride(match: "meta-llama/*")
        model.statementTimeout = 120000
        model.maxConnectionsPerServer = 1
        model.fallback = .error
        XCTAssertEqual(ml.models, [model])
        XCTAssertEqual(config.pool(named: "app")?.queryParserEnabled, true)
    }
}
