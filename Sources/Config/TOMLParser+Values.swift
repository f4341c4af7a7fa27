/// TOML values: strings (basic, literal, multi-line), numbers, booleans, dates, arrays and inline tables.

extension TOMLScanner {
    mutating func parseValue() throws(TOMLError) -> ConfigNode {
        guard let c = peek() else { throw error("expected a value, found end of file") }
        switch c {
        case Byte.quote:
            if peek(1) == Byte.quote, peek(2) == Byte.quote {
                return .string(try parseMultilineString(literal: false))
            }
            return .string(try parseBasicString())
        case Byte.apostrophe:
            if peek(1) == Byte.apostrophe, peek(2) == Byte.apostrophe {
                return .string(try parseMultilineString(literal: true))
            }
            return .string(try parseLiteralString())
        case Byte.openBracket:
            return try parseArray()
        case Byte.openBrace:
            return try parseInlineTable()
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            if matches("true") { advance(4); return .bool(true) }
            if matches("false") { advance(5); return .bool(false) }
            return try parseNumberOrDate()
        default:
            return try parseNumberOrDate()
        }
    }

    func matches(_ word: String) -> Bool {
        let w = Array(word.utf8)
        guard pos + w.count <= bytes.count, Array(bytes[pos..<pos + w.count]) == w else { return false }
        if let next = peek(w.count), Byte.isBareKey(next) { return false }
        return true
    }

    // MARK: Strings

    mutating func parseBasicString() throws(TOMLError) -> String {
        advance()
        var out: [UInt8] = []
        while true {
            guard let c = peek() else { throw error("unterminated string") }
            switch c {
            case Byte.quote:
                advance()
                return String(decoding: out, as: UTF8.self)
            case Byte.backslash:
                try parseEscape(into: &out)
            case Byte.newline, Byte.carriageReturn:
                throw error("unterminated string (use \"\"\" for a multi-line string)")
            default:
                if Byte.isForbiddenControl(c) { throw error("control character in a string (escape it)") }
                out.append(c)
                advance()
            }
        }
    }

    mutating func parseLiteralString() throws(TOMLError) -> String {
        advance()
        let start = pos
        while true {
            guard let c = peek() else { throw error("unterminated literal string") }
            if c == Byte.apostrophe { break }
            if c == Byte.newline || c == Byte.carriageReturn {
                throw error("unterminated literal string (use ''' for a multi-line string)")
            }
            if Byte.isForbiddenControl(c) { throw error("control character in a literal string") }
            advance()
        }
        let text = String(decoding: bytes[start..<pos], as: UTF8.self)
        advance()
        return text
    }

    /// `"""..."""` (escapes and line-ending backslashes) or `'''...'''` (raw).
    mutating func parseMultilineString(literal: Bool) throws(TOMLError) -> String {
        let delimiter = literal ? Byte.apostrophe : Byte.quote
        advance(3)
        if peek() == Byte.newline {
            advance()
        } else if peek() == Byte.carriageReturn, peek(1) == Byte.newline {
            advance(2)
        }
        var out: [UInt8] = []
        while true {
            guard let c = peek() else { throw error("unterminated multi-line string") }
            if c == delimiter, peek(1) == delimiter, peek(2) == delimiter {
                var run = 3
                while peek(run) == delimiter { run += 1 }
                if run > 5 { throw error("too many quotes at the end of a multi-line string") }
                out.append(contentsOf: repeatElement(delimiter, count: run - 3))
                advance(run)
                return String(decoding: out, as: UTF8.self)
            }
            switch c {
            case Byte.backslash where !literal:
                if isLineEndingBackslash() {
                    advance()
                    while let w = peek(), [Byte.space, Byte.tab, Byte.newline, Byte.carriageReturn].contains(w) {
                        advance()
                    }
                } else {
                    try parseEscape(into: &out)
                }
            case Byte.carriageReturn:
                guard peek(1) == Byte.newline else { throw error("carriage return without a line feed") }
                out.append(Byte.newline)
                advance(2)
            case Byte.newline:
                out.append(c)
                advance()
            default:
                if Byte.isForbiddenControl(c) { throw error("control character in a string") }
                out.append(c)
                advance()
            }
        }
    }

    /// A backslash followed only by spaces/tabs up to the end of the line trims the following whitespace.
    func isLineEndingBackslash() -> Bool {
        var i = 1
        while let c = peek(i), c == Byte.space || c == Byte.tab { i += 1 }
        return peek(i) == Byte.newline || (peek(i) == Byte.carriageReturn && peek(i + 1) == Byte.newline)
    }

    mutating func parseEscape(into out: inout [UInt8]) throws(TOMLError) {
        advance()
        guard let c = peek() else { throw error("unterminated escape sequence") }
        let simple: [UInt8: UInt8] = [
            UInt8(ascii: "b"): 0x08, UInt8(ascii: "t"): 0x09, UInt8(ascii: "n"): 0x0A, UInt8(ascii: "f"): 0x0C,
            UInt8(ascii: "r"): 0x0D, UInt8(ascii: "e"): 0x1B, Byte.quote: Byte.quote, Byte.backslash: Byte.backslash,
        ]
        if let byte = simple[c] {
            out.append(byte)
            advance()
            return
        }
        let digits: Int
        switch c {
        case UInt8(ascii: "u"): digits = 4
        case UInt8(ascii: "U"): digits = 8
        default: throw error("invalid escape sequence '\\\(Character(Unicode.Scalar(c)))'")
        }
        advance()
        var value: UInt32 = 0
        for _ in 0..<digits {
            guard let h = peek(), let d = hexValue(h) else {
                throw error("expected \(digits) hex digits in a \\u escape")
            }
            value = value * 16 + UInt32(d)
            advance()
        }
        guard let scalar = Unicode.Scalar(value) else {
            throw error("escape \\u\(String(value, radix: 16)) is not a Unicode scalar value")
        }
        out.append(contentsOf: Array(String(Character(scalar)).utf8))
    }

    func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }

    // MARK: Arrays and inline tables

    mutating func parseArray() throws(TOMLError) -> ConfigNode {
        advance()
        var items: [ConfigNode] = []
        while true {
            try skipWhitespaceAndComments()
            if peek() == Byte.closeBracket {
                advance()
                return .array(items)
            }
            items.append(try parseValue())
            try skipWhitespaceAndComments()
            switch peek() {
            case Byte.comma:
                advance()
            case Byte.closeBracket:
                advance()
                return .array(items)
            case nil:
                throw error("unterminated array (expected ']')")
            default:
                throw error("expected ',' or ']' in an array, found \(found())")
            }
        }
    }

    mutating func parseInlineTable() throws(TOMLError) -> ConfigNode {
        advance()
        let table = TOMLTable(origin: .header)
        try skipWhitespaceAndComments()
        if peek() == Byte.closeBrace {
            advance()
            return table.toNode()
        }
        while true {
            try parseKeyValue(into: table)
            try skipWhitespaceAndComments()
            switch peek() {
            case Byte.comma:
                advance()
                try skipWhitespaceAndComments()
                if peek() == Byte.closeBrace {
                    advance()
                    return table.toNode()
                }
            case Byte.closeBrace:
                advance()
                return table.toNode()
            case nil:
                throw error("unterminated inline table (expected '}')")
            default:
                throw error("expected ',' or '}' in an inline table, found \(found())")
            }
        }
    }
}
