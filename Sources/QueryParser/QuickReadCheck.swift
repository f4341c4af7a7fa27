/// A lexical shortcut before the parser: a single SELECT (or VALUES / TABLE) that names nothing that could write or
/// lock is a read, decided in well under a microsecond without libpg_query. Anything else (and anything unsure:
/// a `FOR`, a second statement, a CTE) goes to the parser. Simple-protocol queries carry their literals, so most
/// texts are new to the parse cache; this keeps them off the parser.
enum QuickReadCheck {
    /// True when `text` is certainly a plain read; false means "ask the parser".
    static func isPlainRead(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { isPlainRead(bytes: $0) }
    }

    static func isPlainRead(bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        let count = bytes.count
        var index = 0
        var firstWord = true
        var statementEnded = false
        @inline(__always) func at(_ i: Int) -> UInt8 { i < count ? bytes[i] : 0 }

        while index < count {
            let byte = bytes[index]
            if statementEnded {
                // Only whitespace and comments may follow the one statement.
                if byte == 0x20 || byte == 0x0A || byte == 0x09 || byte == 0x0D || byte == UInt8(ascii: ";") {
                    index += 1
                    continue
                }
                if byte == UInt8(ascii: "-") && at(index + 1) == UInt8(ascii: "-") {
                    while index < count, bytes[index] != 0x0A { index += 1 }
                    continue
                }
                return false
            }
            switch byte {
            case UInt8(ascii: ";"):
                statementEnded = true
                index += 1
            case UInt8(ascii: "-") where at(index + 1) == UInt8(ascii: "-"):
                while index < count, bytes[index] != 0x0A { index += 1 }
            case UInt8(ascii: "/") where at(index + 1) == UInt8(ascii: "*"):
                var depth = 1
                index += 2
                while index < count, depth > 0 {
                    if bytes[index] == UInt8(ascii: "*"), at(index + 1) == UInt8(ascii: "/") {
                        depth -= 1
                        index += 2
                    } else if bytes[index] == UInt8(ascii: "/"), at(index + 1) == UInt8(ascii: "*") {
                        depth += 1
                        index += 2
                    } else {
                        index += 1
                    }
                }
            case UInt8(ascii: "'"), UInt8(ascii: "\""):
                let escapes = byte == UInt8(ascii: "'") && index > 0 && bytes[index - 1] | 0x20 == UInt8(ascii: "e")
                index += 1
                while index < count {
                    if escapes && bytes[index] == UInt8(ascii: "\\") { index += 2; continue }
                    if bytes[index] == byte {
                        if at(index + 1) == byte { index += 2; continue }
                        break
                    }
                    index += 1
                }
                guard index < count else { return false }  // unterminated: let the parser say so
                index += 1
            case UInt8(ascii: "$"):
                // $1 parameters are fine; dollar-quoted bodies are rare in reads: ask the parser.
                guard at(index + 1) >= UInt8(ascii: "0"), at(index + 1) <= UInt8(ascii: "9") else { return false }
                index += 1
                while index < count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") { index += 1 }
            default:
                let lower = byte | 0x20
                guard (lower >= UInt8(ascii: "a") && lower <= UInt8(ascii: "z")) || byte == UInt8(ascii: "_") else {
                    if byte >= 0x80 { return false }  // non-ASCII identifiers: the parser knows the rules
                    index += 1
                    continue
                }
                let start = index
                while index < count {
                    let b = bytes[index]
                    let l = b | 0x20
                    guard (l >= UInt8(ascii: "a") && l <= UInt8(ascii: "z")) || b == UInt8(ascii: "_")
                            || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "$") else { break }
                    index += 1
                }
                if index < count, bytes[index] == UInt8(ascii: "'") { return false }  // E'' B'' X'' U&'': parser
                let word = UnsafeBufferPointer(rebasing: bytes[start..<index])
                if firstWord {
                    firstWord = false
                    guard equals(word, "select") || equals(word, "values") || equals(word, "table") else { return false }
                } else if isRisky(word) {
                    return false
                }
            }
        }
        return !firstWord
    }

    /// Words after which the parser must decide: row locks (FOR), SELECT INTO, data-modifying statements, and
    /// functions with effects a replica cannot have (the parser's list, plus any advisory-lock function).
    private static func isRisky(_ word: UnsafeBufferPointer<UInt8>) -> Bool {
        switch word.count {
        case 3: return equals(word, "for")
        case 4: return equals(word, "into") || equals(word, "pgml")  // pgml.train & co. write: the parser decides
        case 5: return equals(word, "merge")
        case 6: return equals(word, "insert") || equals(word, "update") || equals(word, "delete")
            || equals(word, "setval")
        case 7: return equals(word, "nextval") || equals(word, "currval") || equals(word, "lastval")
            || equals(word, "lowrite")
        case 9: return equals(word, "pg_notify") || equals(word, "lo_create") || equals(word, "lo_import")
            || equals(word, "lo_unlink")
        default:
            return hasPrefix(word, "pg_advisory") || hasPrefix(word, "pg_try_advisory") || hasPrefix(word, "txid_")
                || hasPrefix(word, "pg_current_") || hasPrefix(word, "lo_") || hasPrefix(word, "pg_switch_wal")
                || hasPrefix(word, "pg_create_") || hasPrefix(word, "pg_logical_emit")
        }
    }

    private static func equals(_ word: UnsafeBufferPointer<UInt8>, _ keyword: StaticString) -> Bool {
        guard word.count == keyword.utf8CodeUnitCount else { return false }
        return hasPrefix(word, keyword)
    }

    private static func hasPrefix(_ word: UnsafeBufferPointer<UInt8>, _ prefix: StaticString) -> Bool {
        let length = prefix.utf8CodeUnitCount
        guard word.count >= length else { return false }
        let pointer = prefix.utf8Start
        for i in 0..<length {
            let byte = word[i]
            let folded = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
            if folded != pointer[i] { return false }
        }
        return true
    }
}
