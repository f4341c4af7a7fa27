/// TOML loading: a PgCat `pgcat.toml` is accepted unchanged, decodes like YAML, and ignored keys become warnings.

import XCTest
import Config

final class TOMLLoadingTests: XCTestCase {
    func testTOMLDecodesToTheSameConfigAsYAML() throws {
        let fromYAML = try ConfigLoader.parse(yaml: Fixtures.referenceYAML)
        let fromTOML = try ConfigLoader.parse(toml: Fixtures.referenceTOML)
        XCTAssertEqual(fromTOML.warnings, [])
        XCTAssertEqual(fromTOML.config, fromYAML.config)
    }

    func testPgCatsOwnExampleWithObsoleteAndMisspeltKeysLoadsWithWarnings() throws {
        let toml = Fixtures.referenceTOML + """

            [pool.sharded_db.plugins]

            [pool.sharded_db.plugins.query_logger]
            enabled = false

            [pool.sharded_db.plugins.table_access]
            enabled = false
            tables = ["pg_user"]
            """
        let withObsolete = toml.replacingOccurrences(
            of: "[pools.simple_db]\n", with: "[pools.simple_db]\nprepared_statements = true\n")
        let loaded = try ConfigLoader.parse(toml: withObsolete)
        XCTAssertEqual(loaded.warnings.count, 2, "\(loaded.warnings)")
        XCTAssertTrue(loaded.warnings.contains { $0.hasPrefix("pools.simple_db.prepared_statements: ") && $0.contains("obsolete") },
                      "\(loaded.warnings)")
        XCTAssertTrue(loaded.warnings.contains { $0.hasPrefix("pool.sharded_db.plugins: ") && $0.contains("'pools'") },
                      "\(loaded.warnings)")
        XCTAssertNil(loaded.config.pool(named: "sharded_db")?.plugins)
    }

    func testSameUnknownKeyIsAnErrorInYAML() {
        assertProblem(Fixtures.yaml(pool: ["prepared_statements: true"]), at: "pools.app.prepared_statements")
        assertProblem(Fixtures.yaml(top: ["pool:", "  app:", "    plugins: {}"]), at: "pool.app.plugins",
                      reason: "unknown key 'pool'")
    }

    func testUnknownKeyWarningsDoNotHideRealErrors() {
        let toml = """
            [general]
            admin_username = "a"
            admin_password = "b"
            verify_config = true

            [pools.app.users.0]
            username = "u"
            password = "p"

            [pools.app.shards.0]
            database = "d"
            servers = [["h", 5432, "primary"]]
            """
        do {
            _ = try ConfigLoader.parse(toml: toml)
            XCTFail("pool_size is missing")
        } catch let error as ConfigError {
            XCTAssertEqual(error.problems.map(\.description), ["pools.app.users.0.pool_size: is required"])
            XCTAssertEqual(error.warnings.count, 1)
            XCTAssertTrue(error.warnings[0].hasPrefix("general.verify_config: "), error.warnings[0])
            XCTAssertTrue(error.warnings[0].contains("validate_config"), error.warnings[0])
        } catch {
            XCTFail("\(error)")
        }
    }

    func testTypeErrorsAreErrorsInTOMLToo() {
        let toml = """
            [general]
            admin_username = "a"
            admin_password = "b"
            port = "6432"
            [pools.app.users.0]
            username = "u"
            password = "p"
            pool_size = 1
            [pools.app.shards.0]
            database = "d"
            servers = [["h", 5432, "primary"]]
            """
        XCTAssertThrowsError(try ConfigLoader.parse(toml: toml)) { error in
            XCTAssertEqual((error as? ConfigError)?.problems.map(\.keyPath), ["general.port"])
        }
    }

    func testArrayOfTablesForUsers() throws {
        let toml = """
            [general]
            admin_username = "a"
            admin_password = "b"
            [[pools.app.users]]
            username = "u1"
            password = "p"
            pool_size = 1
            [[pools.app.users]]
            username = "u2"
            password = "p"
            pool_size = 2
            [[pools.app.shards]]
            database = "d"
            servers = [{ host = "h", port = 5432, role = "primary", tags = ["gpu"] }]
            """
        let pool = try XCTUnwrap(ConfigLoader.parse(toml: toml).config.pool(named: "app"))
        XCTAssertEqual(pool.users.map(\.username), ["u1", "u2"])
        XCTAssertEqual(pool.shards.first?.servers.first?.tags, ["gpu"])
    }

    func testOldBooleanAutoreloadMeansOff() throws {
        let toml = Fixtures.referenceTOML.replacingOccurrences(of: "autoreload = 15000", with: "autoreload = false")
        XCTAssertNil(try ConfigLoader.parse(toml: toml).config.general.autoreload)
    }

    func testSyntaxErrorNamesTheLine() {
        XCTAssertThrowsError(try ConfigLoader.parse(toml: "[general]\nport = 6432\nhost = 0.0.0.0\n", path: "x.toml")) { error in
            let problem = (error as? ConfigError)?.problems.first
            XCTAssertEqual(problem?.keyPath, "")
            XCTAssertTrue(problem?.reason.contains("x.toml") == true, "\(String(describing: problem))")
            XCTAssertTrue(problem?.reason.contains("line 3") == true, "\(String(describing: problem))")
        }
    }
}
