/// Recognises the SQL commands about prepared statements: PREPARE name ..., EXECUTE name ...,
/// DEALLOCATE [PREPARE] name|ALL and DISCARD ALL.
import NIOCore

enum StatementCommand: Equatable {
    case prepare(String)
    case execute(String)
    case deallocate(String)
    case deallocateAll
    case discardAll

    /// PREPARE texts longer than this are not tracked (they run, but are not replayed on another server).
    static let maxTrackedLength = 8192

    /// Cheap first look at a Query payload (no allocation): could it be DEALLOCATE or DISCARD?
    @inline(__always)
    static func mightMatch(_ query: ByteBuffer) -> Bool {
        var index = query.readerIndex
        let end = query.writerIndex
        while index < end, let byte = query.getInteger(at: index, as: UInt8.self),
              byte == 0x20 || byte == 0x0A || byte == 0x09 || byte == 0x0D {
            index += 1
        }
        guard let first = query.getInteger(at: index, as: UInt8.self) else { return false }
        switch first | 0x20 {
        case UInt8(ascii: "d"), UInt8(ascii: "p"), UInt8(ascii: "e"): return true
        default: return false
        }
    }

    /// A one-statement command's words as written, split at white space, a trailing semicolon removed.
    static func words(of text: String) -> [String] {
        // ("\r\n" is one Character in Swift: CRLF line ends are white space too, as are form feeds for PostgreSQL.)
        var words = text.split(whereSeparator: {
            $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" || $0 == "\r\n" || $0 == "\u{0C}"
        }).map(String.init)
        if var last = words.last, last.hasSuffix(";") {
            last.removeLast()
            words[words.count - 1] = last
            if last.isEmpty { words.removeLast() }
        }
        return words
    }

    /// `query` is a Query message payload (SQL text, NUL-terminated). Only a single, whole command matches.
    init?(query: ByteBuffer) {
        guard query.readableBytes < Self.maxTrackedLength,
              var text = query.getString(at: query.readerIndex, length: query.readableBytes) else { return nil }
        if text.hasSuffix("\0") { text.removeLast() }
        let words = Self.words(of: text)
        guard let first = words.first?.lowercased() else { return nil }
        if first == "prepare" || first == "execute", words.count >= 2 {
            // The name ends at whitespace or "(": PREPARE q(int) AS ..., EXECUTE q(1)
            let raw = words[1].split(separator: "(", maxSplits: 1, omittingEmptySubsequences: false)[0]
            guard let name = Self.identifier(String(raw)) else { return nil }
            if first == "prepare" {
                guard words.contains(where: { $0.lowercased() == "as" || $0.lowercased().hasSuffix(")as") }) else { return nil }
                self = .prepare(name)
            } else {
                self = .execute(name)
            }
            return
        }
        if first == "discard", words.count == 2, words[1].lowercased() == "all" {
            self = .discardAll
            return
        }
        guard first == "deallocate" else { return nil }
        var rest = Array(words.dropFirst())
        if rest.first?.lowercased() == "prepare" { rest.removeFirst() }
        guard rest.count == 1 else { return nil }
        if rest[0].lowercased() == "all" {
            self = .deallocateAll
        } else if let name = Self.identifier(rest[0]) {
            self = .deallocate(name)
        } else {
            return nil
        }
    }

    /// An SQL identifier as Postgres folds it: quoted keeps its case, unquoted is lower-cased.
    static func identifier(_ token: String) -> String? {
        if token.hasPrefix("\""), token.hasSuffix("\""), token.count >= 2 {
            return String(token.dropFirst().dropLast()).replacingOccurrences(of: "\"\"", with: "\"")
        }
        guard !token.isEmpty, !token.contains("\"") else { return nil }
        return token.lowercased()
    }
}
