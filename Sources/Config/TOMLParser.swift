/// A small TOML 1.0 parser (plus TOML 1.1's multi-line inline tables) that produces a `ConfigNode` tree.
///
/// Dates and times are accepted and kept as strings (PgCat has no date-valued keys).

/// A TOML syntax or structure error, with the 1-based line and column (in bytes) where it was found.
public struct TOMLError: Error, Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public var message: String

    public init(line: Int, column: Int, message: String) {
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String { "line \(line), column \(column): \(message)" }
}

public enum TOMLParser {
    /// Parses a whole TOML document into a `.table` node.
    public static func parse(_ text: String) throws(TOMLError) -> ConfigNode {
        var scanner = TOMLScanner(text)
        return try scanner.parseDocument()
    }
}

/// ASCII bytes the scanner compares against.
enum Byte {
    static let tab = UInt8(ascii: "\t")
    static let newline = UInt8(ascii: "\n")
    static let carriageReturn = UInt8(ascii: "\r")
    static let space = UInt8(ascii: " ")
    static let hash = UInt8(ascii: "#")
    static let quote = UInt8(ascii: "\"")
    static let apostrophe = UInt8(ascii: "'")
    static let backslash = UInt8(ascii: "\\")
    static let openBracket = UInt8(ascii: "[")
    static let closeBracket = UInt8(ascii: "]")
    static let openBrace = UInt8(ascii: "{")
    static let closeBrace = UInt8(ascii: "}")
    static let equals = UInt8(ascii: "=")
    static let comma = UInt8(ascii: ",")
    static let dot = UInt8(ascii: ".")
    static let underscore = UInt8(ascii: "_")
    static let minus = UInt8(ascii: "-")

    static func isBareKey(_ c: UInt8) -> Bool {
        (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c) || (0x30...0x39).contains(c)
            || c == underscore || c == minus
    }

    /// Control characters TOML forbids in strings and comments (tab is allowed).
    static func isForbiddenControl(_ c: UInt8) -> Bool {
        (c < 0x20 && c != tab) || c == 0x7F
    }
}

struct TOMLScanner {
    let bytes: [UInt8]
    var pos = 0
    var line = 1
    var lineStart = 0

    init(_ text: String) {
        var bytes = Array(text.utf8)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        self.bytes = bytes
    }

    func peek(_ offset: Int = 0) -> UInt8? {
        pos + offset < bytes.count ? bytes[pos + offset] : nil
    }

    mutating func advance(_ count: Int = 1) {
        for _ in 0..<count where pos < bytes.count {
            if bytes[pos] == Byte.newline {
                line += 1
                lineStart = pos + 1
            }
            pos += 1
        }
    }

    func error(_ message: String) -> TOMLError {
        TOMLError(line: line, column: pos - lineStart + 1, message: message)
    }

    /// Describes the byte at the cursor for error messages.
    func found() -> String {
        guard let c = peek() else { return "end of file" }
        switch c {
        case Byte.newline, Byte.carriageReturn: return "end of line"
        case 0x21...0x7E: return "'\(Character(Unicode.Scalar(c)))'"
        default: return "byte 0x\(String(c, radix: 16))"
        }
    }

    // MARK: Document structure

    mutating func parseDocument() throws(TOMLError) -> ConfigNode {
        let root = TOMLTable(origin: .header)
        var current = root
        while true {
            skipWhitespace()
            guard let c = peek() else { break }
            switch c {
            case Byte.hash, Byte.newline, Byte.carriageReturn:
                try expectLineEnd(after: "")
            case Byte.openBracket:
                current = try parseHeader(root: root)
                try expectLineEnd(after: "a table header")
            default:
                try parseKeyValue(into: current)
                try expectLineEnd(after: "a value")
            }
        }
        return root.toNode()
    }

    mutating func skipWhitespace() {
        while let c = peek(), c == Byte.space || c == Byte.tab { advance() }
    }

    mutating func skipComment() throws(TOMLError) {
        guard peek() == Byte.hash else { return }
        while let c = peek(), c != Byte.newline {
            if c == Byte.carriageReturn, peek(1) == Byte.newline { break }
            if Byte.isForbiddenControl(c) { throw error("control character in a comment") }
            advance()
        }
    }

    /// After a header or key/value: optional spaces and comment, then a newline or the end of the file.
    mutating func expectLineEnd(after what: String) throws(TOMLError) {
        skipWhitespace()
        try skipComment()
        switch peek() {
        case nil:
            return
        case Byte.newline:
            advance()
        case Byte.carriageReturn where peek(1) == Byte.newline:
            advance(2)
        default:
            let context = what.isEmpty ? "" : " after \(what)"
            throw error("expected a newline\(context), found \(found())")
        }
    }

    /// Spaces, tabs, newlines and comments, as allowed inside arrays and (TOML 1.1) inline tables.
    mutating func skipWhitespaceAndComments() throws(TOMLError) {
        while true {
            skipWhitespace()
            switch peek() {
            case Byte.hash:
                try skipComment()
            case Byte.newline:
                advance()
            case Byte.carriageReturn where peek(1) == Byte.newline:
                advance(2)
            default:
                return
            }
        }
    }

    mutating func parseHeader(root: TOMLTable) throws(TOMLError) -> TOMLTable {
        let startLine = line, startColumn = pos - lineStart + 1
        advance()
        let isArray = peek() == Byte.openBracket
        if isArray { advance() }
        skipWhitespace()
        let path = try parseKey()
        skipWhitespace()
        guard peek() == Byte.closeBracket else {
            throw error("expected ']' to close the table header, found \(found())")
        }
        advance()
        if isArray {
            guard peek() == Byte.closeBracket else { throw error("expected ']]' to close the array-of-tables header") }
            advance()
        }
        do {
            return isArray ? try root.appendTableArrayElement(path) : try root.defineTable(path)
        } catch {
            throw TOMLError(line: startLine, column: startColumn, message: error.message)
        }
    }

    mutating func parseKeyValue(into table: TOMLTable) throws(TOMLError) {
        let startLine = line, startColumn = pos - lineStart + 1
        let path = try parseKey()
        skipWhitespace()
        guard peek() == Byte.equals else { throw error("expected '=' after the key, found \(found())") }
        advance()
        skipWhitespace()
        let value = try parseValue()
        do {
            try table.assign(path, value)
        } catch {
            throw TOMLError(line: startLine, column: startColumn, message: error.message)
        }
    }

    /// A possibly dotted key: `a`, `"quoted key"`, `'literal'`, `a.b."c d"`.
    mutating func parseKey() throws(TOMLError) -> [String] {
        var parts = [try parseSimpleKey()]
        while true {
            skipWhitespace()
            guard peek() == Byte.dot else { return parts }
            advance()
            skipWhitespace()
            parts.append(try parseSimpleKey())
        }
    }

    mutating func parseSimpleKey() throws(TOMLError) -> String {
        switch peek() {
        case Byte.quote:
            if peek(1) == Byte.quote, peek(2) == Byte.quote { throw error("a key cannot be a multi-line string") }
            return try parseBasicString()
        case Byte.apostrophe:
            if peek(1) == Byte.apostrophe, peek(2) == Byte.apostrophe {
                throw error("a key cannot be a multi-line string")
            }
            return try parseLiteralString()
        default:
            let start = pos
            while let c = peek(), Byte.isBareKey(c) { advance() }
            guard pos > start else { throw error("expected a key, found \(found())") }
            return String(decoding: bytes[start..<pos], as: UTF8.self)
        }
    }
}
