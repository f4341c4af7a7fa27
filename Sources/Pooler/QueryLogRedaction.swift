/// What `query_logger` writes instead of a statement's text where the text carries a password: the string literal
/// after the keyword PASSWORD (`CREATE ROLE ... PASSWORD '...'`, `ALTER USER ... WITH ENCRYPTED PASSWORD '...'`,
/// psql's `\password`, which sends a SCRAM verifier) becomes `'********'`. A lexical scan: the word inside a
/// literal, a quoted identifier or a comment does not count, and any literal form (E'', U&'', $$) is covered.
enum QueryLogRedaction {
    static let mask = "'********'"

    static func redact(_ text: String) -> String {
        let bytes = Array(text.utf8)
        // Cheap first look: most statements do not contain the word at all.
        guard containsPasswordWord(bytes) else { return text }
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var index = 0
        var afterPassword = false  // the last token was the keyword PASSWORD (whitespace and comments skipped)
        while index < bytes.count {
            let byte = bytes[index]
            let start = index
            if byte == UInt8(ascii: "-"), next(bytes, index) == UInt8(ascii: "-") {
                while index < bytes.count, bytes[index] != 0x0A { index += 1 }
                output += bytes[start..<index]
                continue
            }
            if byte == UInt8(ascii: "/"), next(bytes, index) == UInt8(ascii: "*") {
                index = SQLWords.skipBlockComment(bytes, from: index)
                output += bytes[start..<index]
                continue
            }
            if isSpace(byte) {
                output.append(byte)
                index += 1
                continue
            }
            if let literalEnd = endOfStringLiteral(bytes, at: index) {
                if afterPassword {
                    output += Array(mask.utf8)
                } else {
                    output += bytes[start..<literalEnd]
                }
                index = literalEnd
                afterPassword = false
                continue
            }
            if byte == UInt8(ascii: "\"") {
                index = SQLWords.skipQuoted(bytes, from: index, quote: byte, backslashEscapes: false)
                output += bytes[start..<index]
                afterPassword = false
                continue
            }
            if isWordByte(byte) {
                while index < bytes.count, isWordByte(bytes[index]) { index += 1 }
                output += bytes[start..<index]
                afterPassword = isPassword(bytes[start..<index])
                continue
            }
            output.append(byte)
            index += 1
            afterPassword = false
        }
        return String(decoding: output, as: UTF8.self)
    }

    private static func containsPasswordWord(_ bytes: [UInt8]) -> Bool {
        let word = Array("password".utf8)
        guard bytes.count >= word.count else { return false }
        for start in 0...(bytes.count - word.count) where bytes[start] | 0x20 == word[0] {
            if (0..<word.count).allSatisfy({ bytes[start + $0] | 0x20 == word[$0] }) { return true }
        }
        return false
    }

    private static func isPassword(_ word: ArraySlice<UInt8>) -> Bool {
        word.count == 8 && zip(word, "password".utf8).allSatisfy { $0 | 0x20 == $1 }
    }

    @inline(__always)
    private static func next(_ bytes: [UInt8], _ index: Int) -> UInt8 {
        index + 1 < bytes.count ? bytes[index + 1] : 0
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D || byte == 0x0C
    }

    private static func isWordByte(_ byte: UInt8) -> Bool {
        let lower = byte | 0x20
        return (lower >= UInt8(ascii: "a") && lower <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
            || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "$") || byte >= 0x80
    }

    /// Where the string literal starting at `index` ends ('...', E'...', U&'...', $tag$...$tag$), or nil.
    private static func endOfStringLiteral(_ bytes: [UInt8], at index: Int) -> Int? {
        let byte = bytes[index], quote = UInt8(ascii: "'")
        if byte == quote {
            return SQLWords.skipQuoted(bytes, from: index, quote: quote, backslashEscapes: false)
        }
        if byte | 0x20 == UInt8(ascii: "e"), next(bytes, index) == quote {
            return SQLWords.skipQuoted(bytes, from: index + 1, quote: quote, backslashEscapes: true)
        }
        if byte | 0x20 == UInt8(ascii: "u"), next(bytes, index) == UInt8(ascii: "&"), index + 2 < bytes.count,
           bytes[index + 2] == quote {
            return SQLWords.skipQuoted(bytes, from: index + 2, quote: quote, backslashEscapes: false)
        }
        if byte == UInt8(ascii: "$") {
            // A dollar-quoted body ends with its closing tag's `$`; a `$1` parameter does not.
            let end = SQLWords.skipDollarQuote(bytes, from: index)
            return end > index + 1 && bytes[end - 1] == UInt8(ascii: "$") ? end : nil
        }
        return nil
    }
}
