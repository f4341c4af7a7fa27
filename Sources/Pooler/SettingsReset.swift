/// A client's Query that puts settings back to their session defaults: `RESET ALL`, `DISCARD ALL`, `RESET name`,
/// `SET name TO DEFAULT` (or `= DEFAULT`), `SET TIME ZONE DEFAULT` (or `LOCAL`). PostgreSQL's session default of a
/// setting the client gave in its startup packet is that value; a server connection's is the pooler's own login's.
/// So after such a command the pooler sets the client's login values again on that connection
/// (ClientConnection+Relay), as PostgreSQL would have them.
/// A single command matches (a trailing semicolon allowed), and a Query of several simple statements that includes
/// one (asyncpg's pool reset ends with RESET ALL); anything else is left alone. A `SET name TO value` after the reset
/// in the same Query (or unit) keeps its value: the restore leaves that setting alone. The text of a Parse is read
/// the same way; a Bind of such a statement restores after its unit's ReadyForQuery.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

enum SettingsReset: Equatable {
    /// RESET ALL, DISCARD ALL.
    case all
    /// RESET name, SET [SESSION] name TO DEFAULT: the name lower-cased, without quotes.
    case one(String)
    /// SET [SESSION] name TO|= value, SET TIME ZONE value: no reset, but after one it gives the setting the value
    /// the restore must keep.
    case set(String)

    /// Cheap first look at a Query payload (no allocation; runs for every short Query of a client with login
    /// settings): does its first word read RESET, DISCARD or SET?
    static func mightMatch(_ query: ByteBuffer) -> Bool {
        query.withUnsafeReadableBytes { mightMatch($0) }
    }

    /// The same for the Query payload at `range` of `buffer` (the relay's frames, read without a slice).
    @inline(__always)
    static func mightMatch(_ buffer: ByteBuffer, payload range: Range<Int>) -> Bool {
        buffer.withUnsafeReadableBytes { raw in
            mightMatch(UnsafeRawBufferPointer(rebasing: raw[(range.lowerBound - buffer.readerIndex)..<(range.upperBound - buffer.readerIndex)]))
        }
    }

    private static func mightMatch(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if startsWithResetWord(bytes) || startsWithComment(bytes) { return true }
        // Several statements (asyncpg's pool reset: `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
        // RESET ALL;`): a semicolon with more after it, and the word RESET or DISCARD somewhere.
        guard let base = bytes.baseAddress, bytes.count > 0,
              let found = memchr(base, Int32(UInt8(ascii: ";")), bytes.count) else { return false }
        let semicolon = base.distance(to: UnsafeRawPointer(found))
        guard bytes[(semicolon + 1)...].contains(where: { !isSpace($0) && $0 != UInt8(ascii: ";") && $0 != 0 })
        else { return false }
        return contains(bytes, "reset") || contains(bytes, "discard")
    }

    /// The same first look for the text of a Parse at `index` of `buffer` (a prepared statement holds one command,
    /// so only its first word counts). Most texts are told apart by their first bytes, read in place.
    @inline(__always)
    static func mightMatchStatement(_ buffer: ByteBuffer, at index: Int, length: Int) -> Bool {
        guard length >= 4, let first = buffer.getInteger(at: index, as: UInt8.self) else { return false }
        if !isSpace(first) {  // (leading white space: the full look decides)
            switch first | 0x20 {
            case UInt8(ascii: "r"), UInt8(ascii: "d"), UInt8(ascii: "/") | 0x20, UInt8(ascii: "-") | 0x20:
                break
            case UInt8(ascii: "s"):  // SET, not SELECT
                guard let third = buffer.getInteger(at: index + 2, as: UInt8.self), third | 0x20 == UInt8(ascii: "t")
                else { return false }
            default:
                return false
            }
        }
        return buffer.withUnsafeReadableBytes { raw in
            let offset = index - buffer.readerIndex
            let bytes = UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + length)])
            return startsWithResetWord(bytes) || startsWithComment(bytes)
        }
    }

    /// A comment first (after white space): the full look decides.
    private static func startsWithComment(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var index = 0
        while index < bytes.count, isSpace(bytes[index]) { index += 1 }
        guard index + 1 < bytes.count else { return false }
        return bytes[index] == UInt8(ascii: "/") && bytes[index + 1] == UInt8(ascii: "*")
            || bytes[index] == UInt8(ascii: "-") && bytes[index + 1] == UInt8(ascii: "-")
    }

    /// The first word (after white space) is RESET, DISCARD or SET, followed by white space.
    private static func startsWithResetWord(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var index = 0
        while index < bytes.count, isSpace(bytes[index]) { index += 1 }
        func word(_ expected: StaticString) -> Bool {
            let length = expected.utf8CodeUnitCount
            guard bytes.count - index > length, isSpace(bytes[index + length]) else { return false }
            let pointer = expected.utf8Start
            for offset in 0..<length where bytes[index + offset] | 0x20 != pointer[offset] { return false }
            return true
        }
        return word("reset") || word("discard") || word("set")
    }

    private static func contains(_ bytes: UnsafeRawBufferPointer, _ word: StaticString) -> Bool {
        let length = word.utf8CodeUnitCount
        guard bytes.count >= length else { return false }
        let pointer = word.utf8Start
        for start in 0...(bytes.count - length) where bytes[start] | 0x20 == pointer[0] {
            if (1..<length).allSatisfy({ bytes[start + $0] | 0x20 == pointer[$0] }) { return true }
        }
        return false
    }

    @inline(__always)
    private static func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x0A || byte == 0x09 || byte == 0x0D }

    /// The resets and sets of a Query payload (NUL-terminated SQL), in order; nil when none of them is a reset.
    static func effects(query: ByteBuffer) -> [SettingsReset]? {
        guard query.readableBytes < 1024,
              var text = query.getString(at: query.readerIndex, length: query.readableBytes) else { return nil }
        if text.hasSuffix("\0") { text.removeLast() }
        return effects(text: text)
    }

    static func effects(text: String) -> [SettingsReset]? {
        if let single = effect(ofStatement: text) { return single.resets ? [single] : nil }
        // Several statements: only when nothing in the text could hide a semicolon (literals, quoted names; the
        // comments go first).
        guard !hasQuotes(text) else { return nil }
        let text = withoutComments(text)
        let effects = text.split(separator: ";").compactMap { Self(statement: String($0)) }
        return effects.contains(where: \.resets) ? effects : nil
    }

    /// The reset or SET a prepared statement's text (one command) is, comments aside, or nil.
    static func effect(ofStatement text: String) -> SettingsReset? {
        // Comments (an ORM's or tracer's, `/* app */ RESET ALL`) go when nothing could hide them (no literals or
        // quoted names).
        Self(statement: hasQuotes(text) ? text : withoutComments(text))
    }

    private static func hasQuotes(_ text: String) -> Bool {
        text.contains(where: { $0 == "'" || $0 == "\"" || $0 == "$" })
    }

    /// `text` without its `/* ... */` and `-- ...` comments (each becomes a space); a text with literals or quoted
    /// names must not come here.
    static func withoutComments(_ text: String) -> String {
        guard text.contains("/*") || text.contains("--") else { return text }
        var result = ""
        var rest = Substring(text)
        while let first = rest.first {
            if rest.hasPrefix("/*") {
                // (PostgreSQL's block comments nest)
                var depth = 0
                while !rest.isEmpty {
                    if rest.hasPrefix("/*") { depth += 1; rest = rest.dropFirst(2) }
                    else if rest.hasPrefix("*/") { depth -= 1; rest = rest.dropFirst(2); if depth == 0 { break } }
                    else { rest = rest.dropFirst() }
                }
                result += " "
            } else if rest.hasPrefix("--") {
                rest = rest.drop(while: { $0 != "\n" && $0 != "\r\n" })
                result += " "
            } else {
                result.append(first)
                rest = rest.dropFirst()
            }
        }
        return result
    }

    /// RESET ALL, DISCARD ALL, RESET name, SET name TO DEFAULT: a reset (not a SET of a value).
    var resets: Bool {
        if case .set = self { return false }
        return true
    }

    /// One statement (a trailing semicolon allowed).
    init?(statement text: String) {
        // (`=` is a word of its own, however written: `SET x=DEFAULT`)
        let spaced = text.contains("=") ? String(text.flatMap { $0 == "=" ? [" ", "=", " "] : [$0] }) : text
        let words = StatementCommand.words(of: spaced)
        guard !words.contains(where: { $0.contains(";") }) else { return nil }  // several statements (or a literal)
        let lowered = words.map { $0.lowercased() }
        switch lowered.first {
        case "reset" where lowered == ["reset", "time", "zone"]:
            self = .one("timezone")  // RESET TIME ZONE: TimeZone's own syntax
        case "reset" where lowered.count == 2:
            if lowered[1] == "all" {
                self = .all
            } else if let name = Self.settingName(words[1]) {
                self = .one(name)
            } else {
                return nil
            }
        case "discard" where lowered == ["discard", "all"]:
            self = .all
        case "set":
            // SET [SESSION] name TO|= DEFAULT (SET LOCAL lasts only the transaction: not a session default)
            let skipped = lowered.count > 1 && lowered[1] == "session" ? 2 : 1
            let rest = Array(words.dropFirst(skipped)), restLowered = Array(lowered.dropFirst(skipped))
            guard restLowered.count >= 3, restLowered[0] != "local" else { return nil }
            let isDefault = restLowered.count == 3 && restLowered[2] == "default"
            if restLowered[0] == "time", restLowered[1] == "zone" {
                // SET TIME ZONE DEFAULT | LOCAL | value: TimeZone's own syntax
                self = isDefault || restLowered.count == 3 && restLowered[2] == "local" ? .one("timezone") : .set("timezone")
            } else if ["to", "="].contains(restLowered[1]), let name = Self.settingName(rest[0]) {
                self = isDefault ? .one(name) : .set(name)
            } else {
                return nil
            }
        default:
            return nil
        }
    }

    /// A setting name as written: plain (case-insensitive) or double-quoted; dotted names kept whole.
    private static func settingName(_ word: String) -> String? {
        if word.hasPrefix("\"") {
            guard word.count >= 2, word.hasSuffix("\""), !word.dropFirst().dropLast().contains("\"") else { return nil }
            return String(word.dropFirst().dropLast()).lowercased()
        }
        guard word.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." }) else { return nil }
        return word.lowercased()
    }

    /// Whether it concerns a setting called `name` (any spelling).
    func concerns(_ name: String) -> Bool {
        switch self {
        case .all: return true
        case .one(let named), .set(let named): return named == name.lowercased()
        }
    }

    /// Whether the setting `name` is at its session default after `effects` (in order): the last of them that
    /// concerns it is a reset.
    static func restores(_ name: String, after effects: [SettingsReset]) -> Bool {
        effects.last(where: { $0.concerns(name) })?.resets ?? false
    }
}
