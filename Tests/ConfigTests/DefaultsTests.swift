/// Defaults: every key left out takes its default, and every documented key is one the decoder knows.

import Foundation
import XCTest
import Config

final class DefaultsTests: XCTestCase {
    private func minimal() throws -> PgCatConfig {
        try Fixtures.load("""
            general: {admin_username: admin, admin_password: secret}
            pools:
              app:
                users: [{username: alice, password: pw, pool_size: 5}]
                shards: [{database: appdb, servers: [[db, 5432, primary]]}]
            """).config
    }

    func testGeneralDefaults() throws {
        let g = try minimal().general
        XCTAssertEqual(g.host, "0.0.0.0")
        XCTAssertEqual(g.port, 6432)
        XCTAssertEqual(g.enablePrometheusExporter, false)
        XCTAssertEqual(g.prometheusExporterPort, 9930)
        XCTAssertEqual(g.connectTimeout, 1000)
        XCTAssertEqual(g.idleTimeout, 600_000)
        XCTAssertEqual(g.serverLifetime, 3_600_000)
        XCTAssertEqual(g.serverRoundRobin, true)
        XCTAssertEqual(g.idleClientInTransactionTimeout, 0)
        XCTAssertEqual(g.healthcheckTimeout, 1000)
        XCTAssertEqual(g.healthcheckDelay, 30_000)
        XCTAssertEqual(g.shutdownTimeout, 60_000)
        XCTAssertEqual(g.banTime, 60)
        XCTAssertEqual(g.logClientConnections, false)
        XCTAssertEqual(g.logClientDisconnections, false)
        XCTAssertNil(g.autoreload)
        XCTAssertEqual(g.workerThreads, 0)
        XCTAssertEqual(g.tcpKeepalivesIdle, 5)
        XCTAssertEqual(g.tcpKeepalivesCount, 5)
        XCTAssertEqual(g.tcpKeepalivesInterval, 5)
        XCTAssertEqual(g.tcpUserTimeout, 10_000)
        XCTAssertNil(g.tlsCertificate)
        XCTAssertNil(g.tlsPrivateKey)
        XCTAssertEqual(g.clientTLSMode, .allow)
        XCTAssertEqual(g.serverTLS, false)
        XCTAssertEqual(g.verifyServerCertificate, false)
        XCTAssertNil(g.serverTLSCAFile)
        XCTAssertEqual(g.adminAuthType, .md5)
        XCTAssertEqual(g.validateConfig, true)
        XCTAssertNil(g.authQuery)
        XCTAssertNil(g.authQueryUser)
        XCTAssertNil(g.authQueryPassword)
        XCTAssertEqual(g.dnsCacheEnabled, false)
        XCTAssertEqual(g.dnsMaxTtl, 30)
        XCTAssertEqual(g.maxClientConn, 0)
        XCTAssertEqual(g.maxMessageSize, 64 * 1024 * 1024)
    }

    func testPoolDefaults() throws {
        let config = try minimal()
        let p = try XCTUnwrap(config.pool(named: "app"))
        XCTAssertNil(config.plugins)
        XCTAssertEqual(p.poolMode, .transaction)
        XCTAssertEqual(p.loadBalancingMode, .random)
        XCTAssertEqual(p.defaultRole, .any)
        XCTAssertEqual(p.queryParserEnabled, false)
        XCTAssertNil(p.queryParserMaxLength)
        XCTAssertEqual(p.queryParserReadWriteSplitting, false)
        XCTAssertEqual(p.primaryReadsEnabled, true)
        XCTAssertNil(p.connectTimeout)
        XCTAssertNil(p.idleTimeout)
        XCTAssertNil(p.serverLifetime)
        XCTAssertNil(p.checkoutFailureLimit)
        XCTAssertEqual(p.shardingFunction, .pgBigintHash)
        XCTAssertNil(p.automaticShardingKey)
        XCTAssertNil(p.shardingKeyRegex)
        XCTAssertNil(p.shardIdRegex)
        XCTAssertEqual(p.regexSearchLimit, 1000)
        XCTAssertEqual(p.defaultShard, "shard_0")
        XCTAssertNil(p.authQuery)
        XCTAssertEqual(p.cleanupServerConnections, true)
        XCTAssertEqual(p.logClientParameterStatusChanges, false)
        XCTAssertEqual(p.preparedStatementsCacheSize, 500)
        XCTAssertEqual(p.dbActivityBasedRouting, false)
        XCTAssertEqual(p.dbActivityInitDelay, 100)
        XCTAssertEqual(p.dbActivityTtl, 900)
        XCTAssertEqual(p.tableMutationCacheMsTtl, 50)
        XCTAssertEqual(p.replicaToPrimaryFailover, false)
        XCTAssertEqual(p.maxReplicaLagBytes, 0)
        XCTAssertEqual(p.readYourWritesWindow, 0)
        XCTAssertNil(p.mlRouting)
        XCTAssertNil(p.plugins)
    }

    func testUserAndServerDefaults() throws {
        let p = try XCTUnwrap(try minimal().pool(named: "app"))
        let u = try XCTUnwrap(p.users.first)
        XCTAssertEqual(u.authType, .scramSHA256)
        XCTAssertNil(u.serverUsername)
        XCTAssertNil(u.serverPassword)
        XCTAssertEqual(u.minPoolSize, 0)
        XCTAssertNil(u.poolMode)
        XCTAssertNil(u.serverLifetime)
        XCTAssertEqual(u.statementTimeout, 0)
        XCTAssertNil(u.connectTimeout)
        XCTAssertNil(u.idleTimeout)
        XCTAssertEqual(u.maxClientConnections, 0)
        let server = try XCTUnwrap(p.shards.first?.servers.first)
        XCTAssertEqual(server.tags, [])
        XCTAssertEqual(server.weight, 1)
        XCTAssertEqual(p.shards.first?.mirrors, [])
    }

    func testMLRoutingDefaults() throws {
        let config = try Fixtures.load(Fixtures.yaml(pool: ["ml_routing: {}"])).config
        let ml = try XCTUnwrap(config.pool(named: "app")?.mlRouting)
        XCTAssertEqual(ml.enabled, false)
        XCTAssertEqual(ml.targetTags, [])
        XCTAssertEqual(ml.dedicated, true)
        XCTAssertEqual(ml.inferencePoolSize, 2)
        XCTAssertEqual(ml.affinity, .rendezvous)
        XCTAssertEqual(ml.affinityReplicas, 1)
        XCTAssertEqual(ml.queueMax, 200)
        XCTAssertEqual(ml.queueTimeout, 2000)
        XCTAssertEqual(ml.statementTimeout, 0)
        XCTAssertEqual(ml.fallback, .error)
        XCTAssertEqual(ml.models, [])
    }

    func testQueryParserIsTurnedOnImplicitly() throws {
        let cases: [[String]] = [
            ["query_parser_read_write_splitting: true"],
            ["automatic_sharding_key: data.id"],
            ["ml_routing: {enabled: true, target_tags: [gpu]}"],
        ]
        for pool in cases {
            let loaded = try Fixtures.load(Fixtures.yaml(pool: pool))
            XCTAssertEqual(loaded.config.pool(named: "app")?.queryParserEnabled, true, "\(pool)")
        }
        let off = try Fixtures.load(Fixtures.yaml(pool: ["query_parser_read_write_splitting: false"]))
        XCTAssertEqual(off.config.pool(named: "app")?.queryParserEnabled, false)
        let contradicted = try Fixtures.load(Fixtures.yaml(
            pool: ["query_parser_enabled: false", "query_parser_read_write_splitting: true"]))
        XCTAssertEqual(contradicted.config.pool(named: "app")?.queryParserEnabled, true)
        XCTAssertTrue(contradicted.warnings.contains { $0.hasPrefix("pools.app.query_parser_enabled: ") },
                      "\(contradicted.warnings)")
    }

    func testEveryKeyInTheDefaultsTableIsKnownToTheDecoder() {
        let headers = [
            "general": "[general]", "pools.<name>": "[pools.app]", "pools.<name>.users.<n>": "[pools.app.users.0]",
            "pools.<name>.shards.<n>": "[pools.app.shards.0]",
            "pools.<name>.shards.<n>.servers.<n>": "[[pools.app.shards.1.servers]]",
            "pools.<name>.ml_routing": "[pools.app.ml_routing]",
            "pools.<name>.ml_routing.models.<n>": "[[pools.app.ml_routing.models]]",
            "plugins.<plugin>": "[plugins.prewarmer]",
        ]
        var sections: [String: [String]] = [:]
        // These two are the sections below, so setting them as keys would clash with the headers.
        let subsections: Set<String> = ["pools.<name> ml_routing", "pools.<name>.ml_routing models"]
        for row in ConfigDefaults.rows where !subsections.contains("\(row.section) \(row.key)") {
            guard let header = headers[row.section] else {
                XCTFail("no header for section \(row.section)")
                continue
            }
            sections[header, default: []].append("\(row.key) = {}")
        }
        let toml = sections.sorted { $0.key.count < $1.key.count }
            .map { ([$0.key] + $0.value).joined(separator: "\n") }.joined(separator: "\n\n")
        do {
            _ = try ConfigLoader.parse(toml: toml)
            XCTFail("the config is full of type errors and must be rejected")
        } catch let error as ConfigError {
            let unknown = error.warnings.filter { $0.contains("unknown key") && !$0.hasPrefix("plugins.prewarmer.tables") }
            XCTAssertEqual(unknown, [])
        } catch {
            XCTFail("\(error)")
        }
    }
}
