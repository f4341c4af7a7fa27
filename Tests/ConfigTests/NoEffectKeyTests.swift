/// PgCat keys that do nothing here: a warning names each one set away from its default, and defaults stay silent.

import XCTest
import Config

final class NoEffectKeyTests: XCTestCase {
    private let admin = ["admin_username: admin", "admin_password: secret"]
    private let message = "is accepted for PgCat compatibility but has no effect in this pooler"

    func testEachKeySetAwayFromItsDefaultIsNamedInAWarning() throws {
        let loaded = try Fixtures.load(Fixtures.yaml(
            general: admin + ["validate_config: false", "dns_cache_enabled: true", "dns_max_ttl: 60"],
            pool: ["checkout_failure_limit: 3", "log_client_parameter_status_changes: true",
                   "db_activity_based_routing: true", "db_activity_init_delay: 200", "db_activity_ttl: 60",
                   "table_mutation_cache_ms_ttl: 100"]))
        let paths = ["general.validate_config", "general.dns_cache_enabled", "general.dns_max_ttl",
                     "pools.app.checkout_failure_limit", "pools.app.log_client_parameter_status_changes",
                     "pools.app.db_activity_based_routing", "pools.app.db_activity_init_delay",
                     "pools.app.db_activity_ttl", "pools.app.table_mutation_cache_ms_ttl"]
        XCTAssertEqual(loaded.warnings.count, paths.count, "\(loaded.warnings)")
        for path in paths {
            XCTAssertTrue(loaded.warnings.contains { $0.hasPrefix("\(path): \(message)") }, "\(path): \(loaded.warnings)")
        }
    }

    func testEachKeyWarnsOnItsOwn() throws {
        let general = ["validate_config: false", "dns_cache_enabled: true", "dns_max_ttl: 0"]
        for line in general {
            let loaded = try Fixtures.load(Fixtures.yaml(general: admin + [line]))
            let key = String(line.prefix { $0 != ":" })
            XCTAssertEqual(loaded.warnings.map { $0.hasPrefix("general.\(key): \(message)") }, [true], line)
        }
        let pool = ["checkout_failure_limit: 1", "log_client_parameter_status_changes: true",
                    "db_activity_based_routing: true", "db_activity_init_delay: 1", "db_activity_ttl: 0",
                    "table_mutation_cache_ms_ttl: 0"]
        for line in pool {
            let loaded = try Fixtures.load(Fixtures.yaml(pool: [line]))
            let key = String(line.prefix { $0 != ":" })
            XCTAssertEqual(loaded.warnings.map { $0.hasPrefix("pools.app.\(key): \(message)") }, [true], line)
        }
    }

    func testDefaultsAndAbsentKeysDoNotWarn() throws {
        XCTAssertEqual(try Fixtures.load(Fixtures.yaml()).warnings, [])
        let explicit = try Fixtures.load(Fixtures.yaml(
            general: admin + ["validate_config: true", "dns_cache_enabled: false", "dns_max_ttl: 30"],
            pool: ["log_client_parameter_status_changes: false", "db_activity_based_routing: false",
                   "db_activity_init_delay: 100", "db_activity_ttl: 900", "table_mutation_cache_ms_ttl: 50"]))
        XCTAssertEqual(explicit.warnings, [])
    }

    func testCheckoutFailureLimitOfZeroMeansNoLimitAsInPgCat() throws {
        XCTAssertEqual(try Fixtures.load(Fixtures.yaml(pool: ["checkout_failure_limit: 0"])).warnings, [])
    }

    func testPgCatsExampleFilesDoNotWarn() throws {
        // They set validate_config, dns_cache_enabled and dns_max_ttl, all to their defaults.
        XCTAssertEqual(try ConfigLoader.parse(yaml: Fixtures.referenceYAML).warnings, [])
        XCTAssertEqual(try ConfigLoader.parse(toml: Fixtures.referenceTOML).warnings, [])
    }

    func testTOMLWarnsWithThePoolsPath() throws {
        let toml = Fixtures.referenceTOML.replacingOccurrences(
            of: "[pools.simple_db]\n", with: "[pools.simple_db]\ncheckout_failure_limit = 5\n")
        let loaded = try ConfigLoader.parse(toml: toml)
        XCTAssertEqual(loaded.warnings, ["pools.simple_db.checkout_failure_limit: \(message)"])
    }

    func testARejectedConfigStillCarriesTheWarning() {
        // `--check` prints the warnings of a config it rejects too.
        let yaml = Fixtures.yaml(pool: ["db_activity_based_routing: true", "db_activity_init_delay: 0"])
        do {
            _ = try ConfigLoader.parse(yaml: yaml)
            XCTFail("db_activity_init_delay 0 with db_activity_based_routing is rejected")
        } catch let error as ConfigError {
            XCTAssertTrue(error.warnings.contains { $0.hasPrefix("pools.app.db_activity_based_routing: \(message)") },
                          "\(error.warnings)")
        } catch {
            XCTFail("\(error)")
        }
    }
}
