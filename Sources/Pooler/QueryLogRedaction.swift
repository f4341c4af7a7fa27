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
                index = endOfBlockComment(bytes, from: index)
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
                index = endOfQuoted(bytes, from: index, quote: byte, backslashEscapes: false)
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
        let byte = bytes[index]
        if byte == UInt8(ascii: "'") {
            return endOfQuoted(bytes, from: index, quote: byte, backslashEscapes: false)
        }
        if byte | 0x20 == UInt8(ascii: "e"), next(bytes, index) == UInt8(ascii: "'") {
            return endOfQuoted(bytes, from: index + 1, quote: UInt8(ascii: "'"), backslashEscapes: true)
        }
        if byte | 0x20 == UInt8(ascii: "u"), next(bytes, index) == UInt8(ascii: "&"), index + 2 < bytes.count,
           bytes[index + 2] == UInt8(ascii: "'") {
            return endOfQuoted(bytes, from: index + 2, quote: UInt8(ascii: "'"), backslashEscapes: false)
        }
        if byte == UInt8(ascii: "$") {
            var tagEnd = index + 1
            while tagEnd < bytes.count, bytes[tagEnd] != UInt8(ascii: "$") {
                let b = bytes[tagEnd]
                guard isWordByte(b), b != UInt8(ascii: "$"), !(tagEnd == index + 1 && b >= 0x30 && b <= 0x39) else {
                    return nil  // $1 (a parameter) or not a tag
                }
                tagEnd += 1
            }
            guard tagEnd < bytes.count else { return nil }
            let tag = bytes[index...tagEnd]
            var search = tagEnd + 1
            while search + tag.count <= bytes.count {
                if bytes[search..<(search + tag.count)].elementsEqual(tag) { return search + tag.count }
                search += 1
            }
            return bytes.count  // unterminated: the rest is the literal
        }
        return nil
    }

    /// The index after the closing quote (doubled quotes stay inside; with `backslashEscapes`, `\'` too).
    private static func endOfQuoted(_ bytes: [UInt8], from start: Int, quote: UInt8, backslashEscapes: Bool) -> Int {
        var index = start + 1
        while index < bytes.count {
            if backslashEscapes, bytes[index] == UInt8(ascii: "\\") {
                index += 2
                continue
            }
            if bytes[index] == quote {
                if next(bytes, index) == quote {
                    index += 2
                    continue
                }
                return index + 1
            }
            index += 1
        }
        return bytes.count
    }

    private static func endOfBlockComment(_ bytes: [UInt8], from start: Int) -> Int {
        var depth = 0
        var index = start
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "/"), next(bytes, index) == UInt8(ascii: "*") {
                depth += 1
                index += 2
            } else if bytes[index] == UInt8(ascii: "*"), next(bytes, index) == UInt8(ascii: "/") {
                depth -= 1
                index += 2
                if depth == 0 { return index }
            } else {
                index += 1
            }
        }
        return bytes.count
    }
}
