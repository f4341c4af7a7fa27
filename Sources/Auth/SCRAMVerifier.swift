/// A stored SCRAM-SHA-256 verifier in PostgreSQL's pg_authid format, parsed, printed and derived.

/// `SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>`, as PostgreSQL stores it
/// and as `password:` in the config may give it.
public struct SCRAMVerifier: Sendable, Equatable {
    public var iterations: Int
    public var salt: [UInt8]
    public var storedKey: [UInt8]
    public var serverKey: [UInt8]

    public static let prefix = "SCRAM-SHA-256$"
    /// PostgreSQL's default `scram_iterations`.
    public static let defaultIterations = 4096
    /// PostgreSQL's salt length (`SCRAM_DEFAULT_SALT_LEN`).
    public static let defaultSaltLength = 16

    public init(iterations: Int, salt: [UInt8], storedKey: [UInt8], serverKey: [UInt8]) {
        self.iterations = iterations
        self.salt = salt
        self.storedKey = storedKey
        self.serverKey = serverKey
    }

    /// Parses a stored verifier. Nil unless: the prefix is exact; iterations is a decimal integer in
    /// 1...Int32.max; the salt is non-empty canonical base64; both keys are base64 of exactly 32 bytes.
    public init?(parsing string: String) {
        let bytes = Array(string.utf8)
        let prefix = Array(Self.prefix.utf8)
        guard bytes.starts(with: prefix) else { return nil }
        let sections = bytes.dropFirst(prefix.count).split(separator: UInt8(ascii: "$"), omittingEmptySubsequences: false)
        guard sections.count == 2 else { return nil }
        let parameters = sections[0].split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
        let keys = sections[1].split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
        guard parameters.count == 2, keys.count == 2,
              let iterations = SCRAMAttributes.parseIterationCount(parameters[0]),
              let salt = Base64.decode(parameters[1]), !salt.isEmpty,
              let storedKey = Base64.decode(keys[0]), storedKey.count == SCRAMCrypto.keyLength,
              let serverKey = Base64.decode(keys[1]), serverKey.count == SCRAMCrypto.keyLength
        else { return nil }
        self.init(iterations: iterations, salt: salt, storedKey: storedKey, serverKey: serverKey)
    }

    /// What PostgreSQL would store for `password` with this salt and iteration count. Runs PBKDF2.
    public static func derive(password: String, salt: [UInt8], iterations: Int) -> SCRAMVerifier {
        let keys = SCRAMKeys.derive(password: password, salt: salt, iterations: iterations)
        return SCRAMVerifier(iterations: iterations, salt: salt, storedKey: keys.storedKey, serverKey: keys.serverKey)
    }

    /// A verifier for `password` with a fresh random 16-byte salt, as `CREATE ROLE ... PASSWORD` makes one.
    public static func derive(password: String, iterations: Int = defaultIterations) -> SCRAMVerifier {
        derive(password: password, salt: AuthNonce.randomBytes(count: defaultSaltLength), iterations: iterations)
    }

    /// Whether `string` looks like a stored verifier (the prefix only; use `init?(parsing:)` to validate).
    public static func isVerifier(_ string: String) -> Bool {
        string.hasPrefix(prefix)
    }

    public var stringValue: String {
        "\(Self.prefix)\(iterations):\(Base64.encode(salt))$\(Base64.encode(storedKey)):\(Base64.encode(serverKey))"
    }
}

extension SCRAMVerifier: CustomStringConvertible {
    /// Leaves the keys out of logs: StoredKey and one observed exchange give away ClientKey.
    public var description: String {
        "SCRAMVerifier(iterations: \(iterations), salt: \(Base64.encode(salt)))"
    }
}
