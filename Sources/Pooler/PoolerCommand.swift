/// PgCat's own SQL, answered by the pooler when the client holds no server (reference/pgcat.md §1.3), with
/// PgCat's syntax: `SET SERVER ROLE TO 'primary'|'replica'|'any'|'auto'|'default'`, `SHOW SERVER ROLE`,
/// `SET PRIMARY READS TO on|off|default`, `SHOW PRIMARY READS`. Case-insensitive, one optional trailing `;`.
import NIOCore

enum PoolerCommand: Equatable {
    enum ServerRole: String { case primary, replica, any, auto, `default` }
    enum PrimaryReads: String { case on, off, `default` }

    case setServerRole(ServerRole)
    case showServerRole
    case setPrimaryReads(PrimaryReads)
    case showPrimaryReads
    /// `SET SHARDING KEY TO 'n'` (digits only, as PgCat).
    case setShardingKey(Int64)
    /// `SET SHARD TO 'n'`; nil for `ANY`.
    case setShard(Int?)
    case showShard
    /// A BEGIN through the extended protocol that the pooler defers, as a Query of its own (automatic sharding:
    /// ClientConnection+DeferredBegin); never parsed from a Query (`ClientConnection.emulatedCommand`). The payload:
    /// the BEGIN as a Query payload.
    case deferredBegin(ByteBuffer)

    /// Cheap first look at a Query payload (no allocation): does it start with `SET ` or `SHOW `, then `SERVER` or
    /// `PRIMARY`? Every query passes here, so SELECTs must be turned away in a few byte comparisons.
    static func mightMatch(_ payload: ByteBuffer) -> Bool {
        guard payload.readableBytes < 64 else { return false }
        return payload.withUnsafeReadableBytes { bytes in
            var index = 0
            while index < bytes.count, bytes[index] == 0x20 { index += 1 }
            @inline(__always) func lower(_ offset: Int) -> UInt8 {
                index + offset < bytes.count ? bytes[index + offset] | 0x20 : 0x20
            }
            guard lower(0) == UInt8(ascii: "s") else { return false }
            let wordLength: Int
            if lower(1) == UInt8(ascii: "e"), lower(2) == UInt8(ascii: "t"), lower(3) == 0x20 {
                wordLength = 3
            } else if lower(1) == UInt8(ascii: "h"), lower(2) == UInt8(ascii: "o"), lower(3) == UInt8(ascii: "w"),
                      lower(4) == 0x20 {
                wordLength = 4
            } else {
                return false
            }
            index += wordLength
            while index < bytes.count, bytes[index] == 0x20 { index += 1 }
            return lower(0) == UInt8(ascii: "s") || lower(0) == UInt8(ascii: "p")
        }
    }

    /// Parses a Query payload (NUL-terminated SQL).
    init?(query payload: ByteBuffer) {
        guard Self.mightMatch(payload),
              var text = payload.getString(at: payload.readerIndex, length: payload.readableBytes) else { return nil }
        if text.hasSuffix("\0") { text.removeLast() }
        var trimmed = Substring(text)
        while trimmed.first == " " { trimmed.removeFirst() }
        while trimmed.last == " " { trimmed.removeLast() }
        if trimmed.last == ";" { trimmed.removeLast() }
        while trimmed.last == " " { trimmed.removeLast() }
        let words = trimmed.split(separator: " ", omittingEmptySubsequences: true).map { $0.lowercased() }
        switch words.count {
        case 2 where words == ["show", "shard"]:
            self = .showShard
        case 5 where words[0...3] == ["set", "sharding", "key", "to"]:
            guard let digits = Self.unquoted(words[4]), !digits.isEmpty, digits.allSatisfy(\.isNumber),
                  let key = Int64(digits) else { return nil }
            self = .setShardingKey(key)
        case 4 where words[0...2] == ["set", "shard", "to"]:
            guard let value = Self.unquoted(words[3]) else { return nil }
            if value == "any" {
                self = .setShard(nil)
            } else if !value.isEmpty, value.allSatisfy(\.isNumber), let shard = Int(value) {
                self = .setShard(shard)
            } else {
                return nil
            }
        case 3 where words == ["show", "server", "role"]:
            self = .showServerRole
        case 3 where words == ["show", "primary", "reads"]:
            self = .showPrimaryReads
        case 5 where words[0...3] == ["set", "server", "role", "to"]:
            // PgCat requires the quotes here.
            let value = words[4]
            guard value.count > 2, value.hasPrefix("'"), value.hasSuffix("'"),
                  let role = ServerRole(rawValue: String(value.dropFirst().dropLast())) else { return nil }
            self = .setServerRole(role)
        case 5 where words[0...3] == ["set", "primary", "reads", "to"]:
            var value = Substring(words[4])
            if value.count > 2, value.hasPrefix("'"), value.hasSuffix("'") { value = value.dropFirst().dropLast() }
            guard let reads = PrimaryReads(rawValue: String(value)) else { return nil }
            self = .setPrimaryReads(reads)
        default:
            return nil
        }
    }

    /// `'x'` or `x` (PgCat's optional quotes).
    private static func unquoted(_ word: String) -> String? {
        if word.hasPrefix("'") {
            guard word.count >= 2, word.hasSuffix("'") else { return nil }
            return String(word.dropFirst().dropLast())
        }
        return word.contains("'") ? nil : word
    }
}
