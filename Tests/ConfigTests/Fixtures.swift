/// Config texts shared by the tests: the reference §2.6 example in YAML and TOML, and a small config builder.

import XCTest
import Config

enum Fixtures {
    /// reference/pgcat.md §2.6, verbatim.
    static let referenceYAML = #"""
    general:
      host: 0.0.0.0
      port: 6432
      enable_prometheus_exporter: true
      prometheus_exporter_port: 9930
      connect_timeout: 1000            # ms
      idle_timeout: 600000             # ms
      server_lifetime: 3600000         # ms
      server_round_robin: true
      idle_client_in_transaction_timeout: 0
      healthcheck_timeout: 1000
      healthcheck_delay: 30000
      shutdown_timeout: 60000
      ban_time: 60                     # seconds
      log_client_connections: false
      log_client_disconnections: false
      autoreload: 15000                # omit to disable
      worker_threads: 4
      tcp_keepalives_idle: 5
      tcp_keepalives_count: 5
      tcp_keepalives_interval: 5
      tcp_user_timeout: 10000
      tls_certificate: .circleci/server.cert
      tls_private_key: .circleci/server.key
      server_tls: false
      verify_server_certificate: false
      admin_username: admin_user
      admin_password: admin_pass
      admin_auth_type: md5
      validate_config: true
      # auth_query: "SELECT usename, passwd FROM pg_shadow WHERE usename='$1'"
      # auth_query_user: sharding_user
      # auth_query_password: sharding_user
      dns_cache_enabled: false
      dns_max_ttl: 30

    plugins:
      prewarmer: {enabled: false, queries: ["SELECT pg_prewarm('pgbench_accounts')"]}
      query_logger: {enabled: false}
      table_access: {enabled: false, tables: [pg_user, pg_roles, pg_database]}
      intercept:
        enabled: true
        queries:
          "0":
            query: "select current_database() as a, current_schemas(false) as b"
            schema: [[a, text], [b, text]]
            result: [["${DATABASE}", "{public}"]]

    pools:
      sharded_db:
        pool_mode: transaction
        load_balancing_mode: random
        default_role: any
        prepared_statements_cache_size: 500
        query_parser_enabled: true
        query_parser_read_write_splitting: true
        primary_reads_enabled: true
        sharding_function: pg_bigint_hash
        # sharding_key_regex: '/\* sharding_key: (\d+) \*/'
        # shard_id_regex: '/\* shard_id: (\d+) \*/'
        # regex_search_limit: 1000
        # default_shard: shard_0
        # automatic_sharding_key: data.id
        idle_timeout: 40000
        connect_timeout: 3000
        users:
          "0": {username: sharding_user, password: sharding_user, pool_mode: transaction, pool_size: 9, statement_timeout: 0}
          "1": {username: other_user, password: other_user, pool_size: 21, statement_timeout: 15000, connect_timeout: 1000, idle_timeout: 1000}
        shards:
          "0":
            database: shard0
            servers:
              - [127.0.0.1, 5432, primary]                          # positional (faithful)
              - {host: localhost, port: 5432, role: replica}       # object form (also accepted)
            # mirrors: [[1.2.3.4, 5432, 0]]   or  [{host: 1.2.3.4, port: 5432, mirroring_target_index: 0}]
          "1": {database: shard1, servers: [[127.0.0.1, 5432, primary], [localhost, 5432, replica]]}
          "2": {database: shard2, servers: [[127.0.0.1, 5432, primary], [localhost, 5432, replica]]}
      simple_db:
        pool_mode: session
        default_role: primary
        query_parser_enabled: true
        primary_reads_enabled: true
        users:
          "0": {username: simple_user, password: simple_user, pool_size: 5, min_pool_size: 3, server_lifetime: 60000, statement_timeout: 0}
        shards:
          "0": {database: some_db, servers: [[127.0.0.1, 5432, primary], [localhost, 5432, replica]]}
    """#

    /// The same config written by hand as a PgCat `pgcat.toml` would be.
    static let referenceTOML = #"""
    #
    # PgCat config example.
    #
    [general]
    host = "0.0.0.0"
    port = 6432
    enable_prometheus_exporter = true
    prometheus_exporter_port = 9930
    connect_timeout = 1000 # milliseconds
    idle_timeout = 600_000
    server_lifetime = 3600000
    server_round_robin = true
    idle_client_in_transaction_timeout = 0
    healthcheck_timeout = 1000
    healthcheck_delay = 30000
    shutdown_timeout = 60000
    ban_time = 60 # seconds
    log_client_connections = false
    log_client_disconnections = false
    autoreload = 15000
    worker_threads = 4
    tcp_keepalives_idle = 5
    tcp_keepalives_count = 5
    tcp_keepalives_interval = 5
    tcp_user_timeout = 10000
    tls_certificate = ".circleci/server.cert"
    tls_private_key = ".circleci/server.key"
    server_tls = false
    verify_server_certificate = false
    admin_username = "admin_user"
    admin_password = "admin_pass"
    admin_auth_type = "md5"
    validate_config = true
    # auth_query = "SELECT usename, passwd FROM pg_shadow WHERE usename='$1'"
    dns_cache_enabled = false
    dns_max_ttl = 30

    [plugins]

    [plugins.prewarmer]
    enabled = false
    queries = [
      "SELECT pg_prewarm('pgbench_accounts')",
    ]

    [plugins.query_logger]
    enabled = false

    [plugins.table_access]
    enabled = false
    tables = [
      "pg_user",
      "pg_roles",
      "pg_database",
    ]

    [plugins.intercept]
    enabled = true

    [plugins.intercept.queries.0]
    query = "select current_database() as a, current_schemas(false) as b"
    schema = [
      ["a", "text"],
      ["b", "text"],
    ]
    result = [
      ["${DATABASE}", "{public}"],
    ]

    [pools.sharded_db]
    pool_mode = "transaction"
    load_balancing_mode = "random"
    default_role = "any"
    prepared_statements_cache_size = 500
    query_parser_enabled = true
    query_parser_read_write_splitting = true
    primary_reads_enabled = true
    sharding_function = "pg_bigint_hash"
    # sharding_key_regex = '/\* sharding_key: (\d+) \*/'
    idle_timeout = 40000
    connect_timeout = 3000

    [pools.sharded_db.users.0]
    username = "sharding_user"
    password = "sharding_user"
    pool_mode = "transaction"
    pool_size = 9
    statement_timeout = 0

    [pools.sharded_db.users.1]
    username = "other_user"
    password = "other_user"
    pool_size = 21
    statement_timeout = 15000
    connect_timeout = 1000
    idle_timeout = 1000

    [pools.sharded_db.shards.0]
    servers = [["127.0.0.1", 5432, "primary"], { host = "localhost", port = 5432, role = "replica" }]
    database = "shard0"

    [pools.sharded_db.shards.1]
    servers = [
        [ "127.0.0.1", 5432, "primary" ],
        [ "localhost", 5432, "replica" ],
    ]
    database = "shard1"

    [pools.sharded_db.shards.2]
    servers = [["127.0.0.1", 5432, "primary" ], ["localhost", 5432, "replica" ]]
    database = "shard2"

    [pools.simple_db]
    pool_mode = "session"
    default_role = "primary"
    query_parser_enabled = true
    primary_reads_enabled = true

    [pools.simple_db.users.0]
    username = "simple_user"
    password = "simple_user"
    pool_size = 5
    min_pool_size = 3
    server_lifetime = 60000
    statement_timeout = 0

    [pools.simple_db.shards.0]
    servers = [
        [ "127.0.0.1", 5432, "primary" ],
        [ "localhost", 5432, "replica" ]
    ]
    database = "some_db"
    """#

    /// A small valid YAML config whose parts can be replaced line by line.
    static func yaml(
        general: [String] = ["admin_username: admin", "admin_password: secret"],
        pool: [String] = [],
        user: [String] = ["username: alice", "password: pw", "pool_size: 5"],
        shard: [String] = ["database: appdb", "servers: [[127.0.0.1, 5432, primary], [localhost, 5433, replica]]"],
        top: [String] = []
    ) -> String {
        var lines = ["general:"] + general.map { "  " + $0 }
        lines += ["pools:", "  app:"] + pool.map { "    " + $0 }
        lines += ["    users:", "      - " + (user.first ?? "{}")] + user.dropFirst().map { "        " + $0 }
        lines += ["    shards:", "      - " + (shard.first ?? "{}")] + shard.dropFirst().map { "        " + $0 }
        return (lines + top).joined(separator: "\n") + "\n"
    }

    /// Loads YAML that must be valid.
    static func load(_ yaml: String, file: StaticString = #filePath, line: UInt = #line) throws -> LoadedConfig {
        do {
            return try ConfigLoader.parse(yaml: yaml)
        } catch {
            XCTFail("unexpected error: \(error)", file: file, line: line)
            throw error
        }
    }

    /// The problems of YAML that must be rejected.
    static func problems(_ yaml: String, file: StaticString = #filePath, line: UInt = #line) -> [ConfigProblem] {
        do {
            _ = try ConfigLoader.parse(yaml: yaml)
            XCTFail("expected the config to be rejected", file: file, line: line)
            return []
        } catch let error as ConfigError {
            return error.problems
        } catch {
            XCTFail("unexpected error type: \(error)", file: file, line: line)
            return []
        }
    }
}

/// Asserts that loading `yaml` fails with a problem at `keyPath` (whose reason contains `reason`, when given).
func assertProblem(
    _ yaml: String, at keyPath: String, reason: String? = nil, file: StaticString = #filePath, line: UInt = #line
) {
    let problems = Fixtures.problems(yaml, file: file, line: line)
    guard let problem = problems.first(where: { $0.keyPath == keyPath }) else {
        XCTFail("no problem at \(keyPath); got: \(problems.map(\.description))", file: file, line: line)
        return
    }
    if let reason, !problem.reason.contains(reason) {
        XCTFail("problem at \(keyPath) is '\(problem.reason)', expected it to mention '\(reason)'", file: file, line: line)
    }
}
