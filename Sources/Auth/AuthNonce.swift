/// Random nonces and salts from the system's cryptographically secure generator.

public enum AuthNonce {
    /// 18 random bytes as base64: 24 printable characters with no comma, valid as a SCRAM nonce.
    public static func random() -> String {
        Base64.encode(randomBytes(count: 18))
    }

    /// `count` bytes from `SystemRandomNumberGenerator` (getrandom/arc4random: suitable for salts and keys).
    public static func randomBytes(count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        while bytes.count < count {
            var word = generator.next()
            for _ in 0..<min(8, count - bytes.count) {
                bytes.append(UInt8(truncatingIfNeeded: word))
                word >>= 8
            }
        }
        return bytes
    }

    /// Four random bytes for AuthenticationMD5Password.
    public static func md5Salt() -> [UInt8] {
        randomBytes(count: 4)
    }
}
