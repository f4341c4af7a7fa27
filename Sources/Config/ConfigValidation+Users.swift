/// `validate()` rules for users: names, sizes, and passwords (plaintext or well-formed stored verifiers).

import Foundation

extension ConfigValidator {
    func validateUsers(_ p: PoolConfig, path: String, into sink: inout ProblemSink) {
        let g = config.general
        let authQueryConfigured = (p.authQuery ?? g.authQuery) != nil
            && (p.authQueryUser ?? g.authQueryUser) != nil
            && (p.authQueryPassword ?? g.authQueryPassword) != nil
        var firstByName: [String: String] = [:]
        for (i, user) in p.users.enumerated() {
            let userPath = labels.path(of: i, in: "\(path).users")
            if user.username.isEmpty {
                sink.add("\(userPath).username", "is required")
            } else if let first = firstByName[user.username] {
                sink.add("\(userPath).username", "duplicate user '\(user.username)' (also users.\(first))")
            } else {
                firstByName[user.username] = labels.label(of: i, in: "\(path).users")
            }
            checkAtLeastOne(user.poolSize, "\(userPath).pool_size", &sink)
            if user.poolSize > ConfigLimits.maxPoolSize {
                sink.add("\(userPath).pool_size", "must be at most \(ConfigLimits.maxPoolSize) (PostgreSQL's most "
                         + "connections), found \(user.poolSize)")
            }
            checkNonNegative(user.minPoolSize, "\(userPath).min_pool_size", &sink)
            if user.minPoolSize > user.poolSize, user.poolSize >= 1 {
                sink.add("\(userPath).min_pool_size", "must not exceed pool_size (\(user.poolSize))")
            }
            let optional: [(String, Int?)] = [
                ("server_lifetime", user.serverLifetime), ("connect_timeout", user.connectTimeout),
                ("idle_timeout", user.idleTimeout),
            ]
            for case let (key, value?) in optional { checkMilliseconds(value, "\(userPath).\(key)", &sink) }
            checkMilliseconds(user.statementTimeout, "\(userPath).statement_timeout", &sink)
            checkNonNegative(user.maxClientConnections, "\(userPath).max_client_connections", &sink)
            if let password = user.password, !password.isEmpty {
                checkPassword(password, authType: user.authType, path: "\(userPath).password", &sink)
            } else if user.authType != .trust, !authQueryConfigured {
                sink.add("\(userPath).password", "is required (unless auth_type is trust or auth_query is configured)")
            }
        }
    }

    /// A password that looks like a stored verifier must be one, and must suit the auth type.
    func checkPassword(_ password: String, authType: AuthType, path: String, _ sink: inout ProblemSink) {
        switch StoredPassword.classify(password) {
        case .failure(let problem):
            sink.add(path, problem.reason)
        case .success(.md5Hash) where authType == .scramSHA256:
            sink.add(path, "an md5 hash cannot serve auth_type scram-sha-256 (SCRAM needs the plaintext "
                + "or a SCRAM-SHA-256 verifier); set auth_type: md5 or give another password")
        case .success(.scramVerifier) where authType == .md5:
            sink.add(path, "a SCRAM-SHA-256 verifier cannot serve auth_type md5; set auth_type: scram-sha-256")
        case .success:
            break
        }
    }
}

/// What kind of secret a configured password is.
public enum StoredPassword: Sendable, Equatable {
    case plaintext
    /// `md5` followed by 32 hex digits: md5(password + username).
    case md5Hash
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, as in `pg_authid.rolpassword`.
    case scramVerifier

    public struct Malformed: Error, Sendable, Equatable {
        public var reason: String
    }

    /// Classifies `password`; something that looks like a stored verifier but is malformed is a failure.
    public static func classify(_ password: String) -> Result<StoredPassword, Malformed> {
        let scramPrefix = "SCRAM-SHA-256$"
        if password.hasPrefix(scramPrefix) {
            return isWellFormedSCRAM(String(password.dropFirst(scramPrefix.count)))
                ? .success(.scramVerifier)
                : .failure(Malformed(reason: "looks like a SCRAM verifier but is not "
                    + "SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>"))
        }
        if password.hasPrefix("md5") {
            let rest = password.dropFirst(3)
            let allHex = !rest.isEmpty && rest.allSatisfy(\.isHexDigit)
            if rest.count == 32, allHex { return .success(.md5Hash) }
            if allHex || rest.count == 32 {
                return .failure(Malformed(reason: "looks like an md5 hash but is not 'md5' followed by 32 hex digits"))
            }
        }
        return .success(.plaintext)
    }

    private static func isWellFormedSCRAM(_ body: String) -> Bool {
        let halves = body.split(separator: "$", omittingEmptySubsequences: false)
        guard halves.count == 2 else { return false }
        let head = halves[0].split(separator: ":", omittingEmptySubsequences: false)
        let keys = halves[1].split(separator: ":", omittingEmptySubsequences: false)
        guard head.count == 2, keys.count == 2,
              let iterations = Int(head[0]), iterations > 0,
              let salt = Data(base64Encoded: String(head[1])), !salt.isEmpty,
              let stored = Data(base64Encoded: String(keys[0])), stored.count == 32,
              let server = Data(base64Encoded: String(keys[1])), server.count == 32
        else { return false }
        return true
    }
}
