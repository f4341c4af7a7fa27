/// `auth_query`: how the pooler looks up the password of a configured user that has none in the config, and what
/// the answer means. Pure: the statements to send and the reading of their rows (the pool runs them).
import Foundation

enum AuthQuery {
    /// What the lookup found.
    enum Outcome: Equatable {
        /// A stored secret: `md5...`, `SCRAM-SHA-256$...`, or a plaintext password.
        case secret(String)
        /// No such role, no password, a role that cannot log in or whose `VALID UNTIL` has passed: the client fails
        /// authentication exactly like one with a wrong password.
        case refused(reason: String)
    }

    /// A statement sent with the extended protocol, parameters as text.
    struct Statement: Equatable {
        var sql: String
        var parameters: [String?]
    }

    /// Startup parameters of the lookup connection: unqualified names in `auth_query` resolve in pg_catalog only, so
    /// a table or function planted in a schema on the search path cannot answer instead (PgBouncer CVE-2025-12819).
    static let connectionParameters: [(String, String)] = [
        ("search_path", "pg_catalog"), ("standard_conforming_strings", "on"),
    ]

    /// Whether the role may log in now (`rolcanlogin`, `rolvaliduntil`), asked whatever `auth_query` returns
    /// (PgBouncer CVE-2025-2291: VALID UNTIL was ignored). pg_roles is readable by every role.
    static let validityCheck = Statement(
        sql: "SELECT rolcanlogin, rolvaliduntil IS NOT NULL AND rolvaliduntil <= pg_catalog.now() "
            + "FROM pg_catalog.pg_roles WHERE rolname = $1",
        parameters: [])

    /// The two statements for `user`: `'$1'` becomes the user name as an escaped SQL literal, a bare `$1` is bound
    /// as a parameter.
    static func statements(query: String, user: String) -> [Statement] {
        let literal = "'" + user.replacingOccurrences(of: "'", with: "''") + "'"
        let sql = query.replacingOccurrences(of: "'$1'", with: literal)
        let bindsUser = sql.range(of: #"\$1(?![0-9])"#, options: .regularExpression) != nil
        var validity = validityCheck
        validity.parameters = [user]
        return [Statement(sql: sql, parameters: bindsUser ? [user] : []), validity]
    }

    /// Reads the rows of `statements(query:user:)`: the auth query's (name, secret) and the validity check's
    /// (can log in, expired).
    static func interpret(user: String, lookup: [[String?]], validity: [[String?]]) -> Outcome {
        guard lookup.count <= 1 else { return .refused(reason: "auth_query returned \(lookup.count) rows for the user") }
        guard let row = lookup.first else { return .refused(reason: "auth_query found no such user") }
        guard row.count >= 2 else { return .refused(reason: "auth_query must return two columns (user name, password)") }
        // A lookup function (PgBouncer's user_lookup pattern) answers an unknown user with a row of NULLs.
        guard let name = row[0] else { return .refused(reason: "auth_query found no such user") }
        guard name == user else { return .refused(reason: "auth_query returned a row for another user") }
        guard let secret = row[1], !secret.isEmpty else { return .refused(reason: "the user has no password") }
        guard let role = validity.first, role.count == 2 else { return .refused(reason: "no such role") }
        guard role[0] == "t" else { return .refused(reason: "the role cannot log in (NOLOGIN)") }
        guard role[1] == "f" else { return .refused(reason: "the role's password has expired (VALID UNTIL)") }
        return .secret(secret)
    }
}
