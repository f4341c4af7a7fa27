/// PostgreSQL's MD5 password scheme: the stored hash, the client's response to a salt, and its check.

import Crypto

public enum MD5Password {
    /// "md5" + hex(md5(password + user)): what pg_authid stores.
    public static func storedHash(user: String, password: String) -> String {
        "md5" + hexMD5(Array(password.utf8) + Array(user.utf8))
    }

    /// What a client sends for AuthenticationMD5Password: "md5" + hex(md5(hex(md5(password+user)) + salt)).
    /// `password` may be plaintext or an already-stored "md5<32hex>" hash (then it's used directly).
    public static func clientResponse(user: String, password: String, salt: [UInt8]) -> String {
        let stored = isStoredHash(password) ? password : storedHash(user: user, password: password)
        let inner = stored.utf8.dropFirst(3) // the 32 hex digits
        return "md5" + hexMD5(Array(inner) + salt)
    }

    /// Server side: checks a client's response against the configured password (plaintext or md5 hash).
    /// Constant-time compare. A configured SCRAM verifier cannot check an MD5 response: always false.
    public static func verify(response: String, user: String, configuredPassword: String, salt: [UInt8]) -> Bool {
        if configuredPassword.hasPrefix("SCRAM-SHA-256$") { return false }
        let expected = clientResponse(user: user, password: configuredPassword, salt: salt)
        return ConstantTime.equals(Array(expected.utf8), Array(response.utf8))
    }

    /// True for "md5" followed by exactly 32 lowercase hex digits, PostgreSQL's test (`get_password_type`)
    /// for a password that is already a stored MD5 hash.
    public static func isStoredHash(_ password: String) -> Bool {
        let bytes = Array(password.utf8)
        guard bytes.count == 35, bytes.starts(with: Array("md5".utf8)) else { return false }
        return bytes.dropFirst(3).allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
            || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
    }

    private static func hexMD5(_ bytes: [UInt8]) -> String {
        Hex.encode(Insecure.MD5.hash(data: bytes))
    }
}
