/// A small JSON reader for libpg_query's parse trees: bytes in, a tree of values out, no Foundation (whose
/// JSONSerialization costs 16-50 µs per statement; this reader a few). Only what the parse tree uses.
enum ParseTreeJSON: Equatable {
    struct Member: Equatable {
        var key: String
        var value: ParseTreeJSON
    }

    case object([Member])
    case array([ParseTreeJSON])
    case string(String)
    case number(String)
    case bool(Bool)
    case null

    static func == (a: ParseTreeJSON, b: ParseTreeJSON) -> Bool {
        switch (a, b) {
        case (.object(let x), .object(let y)): return x == y
        case (.array(let x), .array(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.number(let x), .number(let y)): return x == y
        case (.bool(let x), .bool(let y)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }

    struct SyntaxError: Error, Equatable {
        var offset: Int
    }

    /// The value of `key` in an object.
    subscript(key: String) -> ParseTreeJSON? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }

    var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    var arrayValue: [ParseTreeJSON] {
        if case .array(let values) = self { return values }
        return []
    }

    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws(SyntaxError) -> ParseTreeJSON {
        var reader = Reader(bytes: bytes)
        let value = try reader.value()
        reader.skipSpace()
        guard reader.index == bytes.count else { throw SyntaxError(offset: reader.index) }
        return value
    }

    static func parse(_ text: String) throws(SyntaxError) -> ParseTreeJSON {
        var copy = text
        do {
            return try copy.withUTF8 { buffer in try parse(buffer) }
        } catch let error as SyntaxError {
            throw error
        } catch {
            throw SyntaxError(offset: 0)
        }
    }

    private struct Reader {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0
        var depth = 0

        mutating func skipSpace() {
            while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x09
                || bytes[index] == 0x0D {
                index += 1
            }
        }

        mutating func value() throws(SyntaxError) -> ParseTreeJSON {
            skipSpace()
            guard index < bytes.count else { throw SyntaxError(offset: index) }
            switch bytes[index] {
            case UInt8(ascii: "{"):
                return try object()
            case UInt8(ascii: "["):
                return try array()
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "t"):
                try literal("true")
                return .bool(true)
            case UInt8(ascii: "f"):
                try literal("false")
                return .bool(false)
            case UInt8(ascii: "n"):
                try literal("null")
                return .null
            default:
                return .number(try number())
            }
        }

        private mutating func nest() throws(SyntaxError) {
            depth += 1
            guard depth < 10_000 else { throw SyntaxError(offset: index) }  // libpg_query caps depth far lower
        }

        private mutating func object() throws(SyntaxError) -> ParseTreeJSON {
            try nest()
            defer { depth -= 1 }
            index += 1
            var members: [Member] = []
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(members)
            }
            while true {
                skipSpace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw SyntaxError(offset: index) }
                let key = try string()
                skipSpace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw SyntaxError(offset: index) }
                index += 1
                members.append(Member(key: key, value: try value()))
                skipSpace()
                guard index < bytes.count else { throw SyntaxError(offset: index) }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(members) }
                throw SyntaxError(offset: index)
            }
        }

        private mutating func array() throws(SyntaxError) -> ParseTreeJSON {
            try nest()
            defer { depth -= 1 }
            index += 1
            var values: [ParseTreeJSON] = []
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(values)
            }
            while true {
                values.append(try value())
                skipSpace()
                guard index < bytes.count else { throw SyntaxError(offset: index) }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(values) }
                throw SyntaxError(offset: index)
            }
        }

        private mutating func string() throws(SyntaxError) -> String {
            index += 1  // opening quote
            let start = index
            var plain = true
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    if plain {
                        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                        index += 1
                        return text
                    }
                    break
                }
                if byte == UInt8(ascii: "\\") {
                    plain = false
                    index += 2
                    continue
                }
                index += 1
            }
            guard !plain else { throw SyntaxError(offset: start) }
            return try escapedString(from: start)
        }

        private mutating func escapedString(from start: Int) throws(SyntaxError) -> String {
            var scalars = String.UnicodeScalarView()
            var utf8: [UInt8] = []
            var i = start
            func flush() {
                if !utf8.isEmpty {
                    scalars.append(contentsOf: String(decoding: utf8, as: UTF8.self).unicodeScalars)
                    utf8.removeAll()
                }
            }
            while i < bytes.count {
                let byte = bytes[i]
                if byte == UInt8(ascii: "\"") {
                    flush()
                    index = i + 1
                    return String(scalars)
                }
                guard byte == UInt8(ascii: "\\") else {
                    utf8.append(byte)
                    i += 1
                    continue
                }
                guard i + 1 < bytes.count else { break }
                let escape = bytes[i + 1]
                i += 2
                switch escape {
                case UInt8(ascii: "n"): utf8.append(0x0A)
                case UInt8(ascii: "t"): utf8.append(0x09)
                case UInt8(ascii: "r"): utf8.append(0x0D)
                case UInt8(ascii: "b"): utf8.append(0x08)
                case UInt8(ascii: "f"): utf8.append(0x0C)
                case UInt8(ascii: "u"):
                    guard i + 4 <= bytes.count,
                          let code = UInt32(String(decoding: UnsafeBufferPointer(rebasing: bytes[i..<(i + 4)]), as: UTF8.self), radix: 16)
                    else { throw SyntaxError(offset: i) }
                    i += 4
                    flush()
                    var scalar = code
                    if (0xD800..<0xDC00).contains(code), i + 6 <= bytes.count, bytes[i] == UInt8(ascii: "\\"),
                       bytes[i + 1] == UInt8(ascii: "u"),
                       let low = UInt32(String(decoding: UnsafeBufferPointer(rebasing: bytes[(i + 2)..<(i + 6)]), as: UTF8.self), radix: 16),
                       (0xDC00..<0xE000).contains(low) {
                        scalar = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    }
                    scalars.append(Unicode.Scalar(scalar) ?? "\u{FFFD}")
                default: utf8.append(escape)  // \" \\ \/
                }
            }
            throw SyntaxError(offset: start)
        }

        private mutating func literal(_ word: StaticString) throws(SyntaxError) {
            let length = word.utf8CodeUnitCount
            guard index + length <= bytes.count else { throw SyntaxError(offset: index) }
            for offset in 0..<length where bytes[index + offset] != word.utf8Start[offset] {
                throw SyntaxError(offset: index)
            }
            index += length
        }

        private mutating func number() throws(SyntaxError) -> String {
            let start = index
            while index < bytes.count {
                let byte = bytes[index]
                guard (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-")
                        || byte == UInt8(ascii: "+") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e")
                        || byte == UInt8(ascii: "E") else { break }
                index += 1
            }
            guard index > start else { throw SyntaxError(offset: index) }
            return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        }
    }
}
