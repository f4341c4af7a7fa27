/// Statements that leave state on a server connection which outlives the transaction and cannot be replayed on
/// another connection: LISTEN, session-level advisory locks, temporary tables and cursors WITH HOLD. In transaction
/// mode a client that runs one is pinned to its server connection until it disconnects (see docs/architecture.md,
/// "Session pinning").
///
/// A lexical scan, not a parse: it skips comments, string literals, quoted identifiers and dollar quotes, and looks
/// at keywords at the start of each statement, so `SELECT 'LISTEN'` or a column named "temp" do not pin.
import NIOCore

enum SessionPin: String, Equatable, Sendable {
    case listen = "LISTEN"
    case advisoryLock = "advisory lock"
    case temporaryTable = "temporary table"
    case holdCursor = "WITH HOLD cursor"

    /// Cheap first look (no allocation): does the text contain a word that could start one of these
    /// ("listen", "temp", "hold" as words; "advisory" after an underscore, as in `pg_advisory_lock`), or
    /// "set_config", case-insensitively? Most queries contain none. (The scan runs for every query in transaction
    /// mode.)
    static func mightPin(_ text: ByteBuffer) -> Bool {
        text.withUnsafeReadableBytes { bytes in
            let count = bytes.count
            var previous: UInt8 = 0x20
            var index = 0
            while index < count {
                let byte = bytes[index]
                switch byte | 0x20 {
                case UInt8(ascii: "l") where !isWordByte(previous):
                    if matches(bytes, index, "listen") { return true }
                case UInt8(ascii: "a") where previous == UInt8(ascii: "_"):
                    if matches(bytes, index, "advisory") { return true }
                case UInt8(ascii: "t") where !isWordByte(previous) || previous == UInt8(ascii: "_"):
                    if matches(bytes, index, "temp") { return true }  // (also pg_temp.name)
                case UInt8(ascii: "h") where !isWordByte(previous):
                    if matches(bytes, index, "hold") { return true }
                case UInt8(ascii: "s") where !isWordByte(previous):
                    if matches(bytes, index, "set_config") { return true }  // (not a pin: `inspect` tells)
                default:
                    break
                }
                previous = byte
                index += 1
            }
            return false
        }
    }

    @inline(__always)
    private static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
    }

    /// A byte after which `SQLWords` cannot start a word (it would continue one): letters, `_` and non-ASCII.
    /// Digits and `$` are not in it, so "1temp" still counts: `SQLWords` reads a word TEMP there.
    @inline(__always)
    private static func isWordByte(_ byte: UInt8) -> Bool {
        let lower = byte | 0x20
        return (lower >= UInt8(ascii: "a") && lower <= UInt8(ascii: "z")) || byte == UInt8(ascii: "_") || byte >= 0x80
    }

    /// Whether `word` (lower case) stands at `start`, letters compared without case (`_` as itself).
    private static func matches(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ word: StaticString) -> Bool {
        let length = word.utf8CodeUnitCount
        guard start + length <= bytes.count else { return false }
        let pointer = word.utf8Start
        for offset in 0..<length where lowercased(bytes[start + offset]) != pointer[offset] {
            return false
        }
        return true
    }

    /// Whether `sql` calls `set_config` (any schema, quoted or not, a mention in a literal too: a false alarm
    /// costs a RESET ALL). Its session-level settings (a search_path, a role, a custom setting a row-level policy
    /// reads) must not reach the next client, yet its command tag is `SELECT`, not `SET`.
    static func callsSetConfig(_ sql: ByteBuffer) -> Bool {
        sql.withUnsafeReadableBytes(callsSetConfig)
    }

    static func callsSetConfig(_ sql: String) -> Bool {
        var sql = sql
        return sql.withUTF8 { callsSetConfig(UnsafeRawBufferPointer($0)) }
    }

    private static func callsSetConfig(_ bytes: UnsafeRawBufferPointer) -> Bool {
        find("set_config", in: bytes, after: { $0.map { !isWordByte($0) } ?? true })
    }

    /// What a statement text does to its session: the pin it needs, and whether it calls `set_config`.
    static func inspect(_ sql: ByteBuffer) -> (pin: SessionPin?, setsConfig: Bool) {
        guard mightPin(sql) else { return (nil, false) }
        return (pinAfterPrefilter(sql), callsSetConfig(sql))
    }

    /// The first pinning operation in `sql` (one or more statements), or nil.
    static func detect(in sql: ByteBuffer) -> SessionPin? {
        mightPin(sql) ? pinAfterPrefilter(sql) : nil
    }

    /// `detect` once `mightPin` said yes.
    private static func pinAfterPrefilter(_ sql: ByteBuffer) -> SessionPin? {
        let statements = SQLWords.statements(in: Array(sql.readableBytesView))
        for words in statements {
            if let pin = detect(statement: words) { return pin }
        }
        // Lock calls the word scan does not see: in a DO block's body, or with the function's name quoted
        // ("pg_advisory_lock"(1)). A missed lock stays on the server connection for the next client; pinning on
        // a mere mention costs a connection. (A lock taken inside a function the text only calls is not seen.)
        let inDOBlock = statements.contains { $0.first == "DO" }
        let before: (UInt8?) -> Bool = { inDOBlock || $0 == UInt8(ascii: "\"") }
        let locks = sql.withUnsafeReadableBytes {
            find("pg_advisory_lock", in: $0, after: before) || find("pg_try_advisory_lock", in: $0, after: before)
        }
        return locks ? .advisoryLock : nil
    }

    /// Whether `word` stands in `bytes` (case-insensitively) after a byte `before` accepts (nil: at the start).
    private static func find(_ word: StaticString, in bytes: UnsafeRawBufferPointer,
                             after before: (UInt8?) -> Bool) -> Bool {
        bytes.indices.contains { start in
            before(start > 0 ? bytes[start - 1] : nil) && matches(bytes, start, word)
        }
    }

    private static let advisoryLockFunctions: Set<String> = [
        "PG_ADVISORY_LOCK", "PG_ADVISORY_LOCK_SHARED", "PG_TRY_ADVISORY_LOCK", "PG_TRY_ADVISORY_LOCK_SHARED",
    ]

    /// `words`: one statement's upper-cased keywords and identifiers, in order (literals left out).
    static func detect(statement words: [String]) -> SessionPin? {
        guard let first = words.first else { return nil }
        if first == "LISTEN" { return .listen }
        if words.contains(where: advisoryLockFunctions.contains) { return .advisoryLock }
        if first == "DECLARE" {
            // DECLARE name [BINARY] [INSENSITIVE] [[NO] SCROLL] CURSOR [{WITH | WITHOUT} HOLD] FOR query
            let head = words.prefix(while: { $0 != "FOR" })
            if let with = head.firstIndex(of: "WITH"), with + 1 < head.endIndex, head[with + 1] == "HOLD" {
                return .holdCursor
            }
            return nil
        }
        if first == "CREATE" {
            // CREATE [GLOBAL | LOCAL] {TEMPORARY | TEMP} {TABLE | VIEW | SEQUENCE} ... [ON COMMIT DROP]
            var index = 1
            if index < words.count, words[index] == "GLOBAL" || words[index] == "LOCAL" { index += 1 }
            if index < words.count, words[index] == "OR" { index += 2 }  // CREATE OR REPLACE TEMP VIEW
            // (or a table created in the pg_temp schema by name, which is temporary too)
            guard index < words.count, words[index] == "TEMP" || words[index] == "TEMPORARY" || words.contains("PG_TEMP")
            else { return nil }
            return dropsOnCommit(words) ? nil : .temporaryTable
        }
        if first == "SELECT" || first == "WITH" {
            // SELECT ... INTO [TEMP | TEMPORARY] [TABLE] name
            for index in words.indices.dropLast() where words[index] == "INTO" {
                let next = words[index + 1]
                if next == "TEMP" || next == "TEMPORARY" || next == "PG_TEMP" { return .temporaryTable }
            }
        }
        return nil
    }

    private static func dropsOnCommit(_ words: [String]) -> Bool {
        guard words.count >= 3 else { return false }
        return (0..<(words.count - 2)).contains { words[$0] == "ON" && words[$0 + 1] == "COMMIT" && words[$0 + 2] == "DROP" }
    }
}

/// Splits SQL text into statements of upper-cased words (keywords and unquoted identifiers), skipping comments,
/// string literals, quoted identifiers and dollar-quoted bodies.
enum SQLWords {
    static func statements(in bytes: [UInt8]) -> [[String]] {
        var result: [[String]] = []
        var current: [String] = []
        var index = 0
        let count = bytes.count
        @inline(__always) func at(_ i: Int) -> UInt8 { i < count ? bytes[i] : 0 }

        while index < count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: ";"):
                if !current.isEmpty { result.append(current) }
                current = []
                index += 1
            case UInt8(ascii: "-") where at(index + 1) == UInt8(ascii: "-"):
                while index < count, bytes[index] != 0x0A { index += 1 }
            case UInt8(ascii: "/") where at(index + 1) == UInt8(ascii: "*"):
                index = skipBlockComment(bytes, from: index)
            case UInt8(ascii: "'"):
                // E'...' escapes were consumed with the E as a word start; treat backslashes conservatively.
                let escapes = index > 0 && (bytes[index - 1] | 0x20) == UInt8(ascii: "e")
                index = skipQuoted(bytes, from: index, quote: UInt8(ascii: "'"), backslashEscapes: escapes)
            case UInt8(ascii: "\""):
                index = skipQuoted(bytes, from: index, quote: UInt8(ascii: "\""), backslashEscapes: false)
            case UInt8(ascii: "$"):
                index = skipDollarQuote(bytes, from: index)
            default:
                if isWordStart(byte) {
                    let start = index
                    while index < count, isWordPart(bytes[index]) { index += 1 }
                    if index < count, bytes[index] == UInt8(ascii: "'"), index - start == 1,
                       bytes[start] | 0x20 == UInt8(ascii: "e") || bytes[start] | 0x20 == UInt8(ascii: "b")
                        || bytes[start] | 0x20 == UInt8(ascii: "x") || bytes[start] | 0x20 == UInt8(ascii: "n") {
                        continue  // a prefixed literal (E'', B'', X'', N''): the quote is handled next
                    }
                    current.append(String(decoding: bytes[start..<index], as: UTF8.self).uppercased())
                } else {
                    index += 1
                }
            }
        }
        if !current.isEmpty { result.append(current) }
        return result
    }

    private static func isWordStart(_ byte: UInt8) -> Bool {
        (byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z") || byte == UInt8(ascii: "_")
            || byte >= 0x80
    }

    private static func isWordPart(_ byte: UInt8) -> Bool {
        isWordStart(byte) || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "$")
    }

    /// The index after a `/* ... */` comment starting at `start` (nested ones included), or the end.
    static func skipBlockComment(_ bytes: [UInt8], from start: Int) -> Int {
        var depth = 1
        var index = start + 2
        while index < bytes.count, depth > 0 {
            let next: UInt8 = index + 1 < bytes.count ? bytes[index + 1] : 0
            if bytes[index] == UInt8(ascii: "*"), next == UInt8(ascii: "/") {
                depth -= 1
                index += 2
            } else if bytes[index] == UInt8(ascii: "/"), next == UInt8(ascii: "*") {
                depth += 1
                index += 2
            } else {
                index += 1
            }
        }
        return index
    }

    /// The index after the quoted text starting at `start` (its opening quote), doubled quotes inside; with
    /// `backslashEscapes` (E'') a backslash escapes the next byte. The end when unterminated.
    static func skipQuoted(_ bytes: [UInt8], from start: Int, quote: UInt8, backslashEscapes: Bool) -> Int {
        var index = start + 1
        while index < bytes.count {
            let byte = bytes[index]
            if backslashEscapes && byte == UInt8(ascii: "\\") {
                index += 2
                continue
            }
            if byte == quote {
                if index + 1 < bytes.count, bytes[index + 1] == quote {
                    index += 2  // doubled quote inside
                    continue
                }
                return index + 1
            }
            index += 1
        }
        return index
    }

    /// `$tag$ ... $tag$` (tag may be empty); a lone `$1` parameter is just skipped.
    static func skipDollarQuote(_ bytes: [UInt8], from start: Int) -> Int {
        var index = start + 1
        while index < bytes.count, isWordPart(bytes[index]), bytes[index] != UInt8(ascii: "$") { index += 1 }
        guard index < bytes.count, bytes[index] == UInt8(ascii: "$") else { return index }
        let tag = Array(bytes[start...index])
        if tag.count > 2, tag[1] >= UInt8(ascii: "0"), tag[1] <= UInt8(ascii: "9") { return index }  // $1$? not a tag
        var search = index + 1
        while search + tag.count <= bytes.count {
            if bytes[search] == UInt8(ascii: "$"), Array(bytes[search..<(search + tag.count)]) == tag {
                return search + tag.count
            }
            search += 1
        }
        return bytes.count
    }
}
