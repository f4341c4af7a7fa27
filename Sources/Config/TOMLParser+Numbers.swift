/// TOML integers (decimal, hex, octal, binary, with `_`), floats (incl. inf/nan) and dates (kept as strings).

extension TOMLScanner {
    mutating func parseNumberOrDate() throws(TOMLError) -> ConfigNode {
        let start = pos
        while let c = peek(), isNumberByte(c) { advance() }
        // A date and a time may be separated by one space: `1979-05-27 07:32:00Z`.
        if pos - start == 10, isDate(bytes[start..<pos]), peek() == Byte.space,
           let d = peek(1), d >= 0x30 && d <= 0x39 {
            advance()
            while let c = peek(), isNumberByte(c) { advance() }
        }
        guard pos > start else { throw error("expected a value, found \(found())") }
        let token = String(decoding: bytes[start..<pos], as: UTF8.self)
        if let node = number(token) { return node }
        if isDate(bytes[start..<pos]) || (token.contains(":") && token.first?.isNumber == true) {
            return .string(token)
        }
        let startColumn = start - lineStart + 1
        let digits = token.first == "+" || token.first == "-" ? Substring(token).dropFirst() : Substring(token)
        if validDigits(digits, radix: 10), !hasLeadingZero(digits) {  // a well-formed integer, too large
            throw TOMLError(line: line, column: startColumn, message: "integer '\(token)' does not fit in 64 bits")
        }
        throw TOMLError(line: line, column: startColumn, message: "invalid value '\(token)' (strings must be quoted)")
    }

    private func isNumberByte(_ c: UInt8) -> Bool {
        Byte.isBareKey(c) || c == UInt8(ascii: "+") || c == Byte.dot || c == UInt8(ascii: ":")
    }

    private func isDate(_ s: ArraySlice<UInt8>) -> Bool {
        let a = Array(s.prefix(10))
        guard a.count == 10, a[4] == Byte.minus, a[7] == Byte.minus else { return false }
        return [0, 1, 2, 3, 5, 6, 8, 9].allSatisfy { a[$0] >= 0x30 && a[$0] <= 0x39 }
    }

    /// Parses an integer or float token; nil when it is neither.
    private func number(_ token: String) -> ConfigNode? {
        var body = Substring(token)
        var sign = ""
        if let first = body.first, first == "+" || first == "-" {
            sign = String(first)
            body = body.dropFirst()
        }
        if body == "inf" { return .float(sign == "-" ? -.infinity : .infinity) }
        if body == "nan" { return .float(.nan) }
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] where body.hasPrefix(prefix) {
            guard sign.isEmpty else { return nil }
            let digits = body.dropFirst(2)
            guard validDigits(digits, radix: radix), let value = Int(digits.replacingUnderscores(), radix: radix) else {
                return nil
            }
            return .integer(value)
        }
        if body.contains(".") || body.contains("e") || body.contains("E") {
            return float(sign: sign, body: body)
        }
        guard validDigits(body, radix: 10), !hasLeadingZero(body),
              let value = Int(sign + body.replacingUnderscores()) else { return nil }
        return .integer(value)
    }

    private func float(sign: String, body: Substring) -> ConfigNode? {
        var mantissa = body
        var exponent: Substring?
        if let e = body.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            mantissa = body[..<e]
            exponent = body[body.index(after: e)...]
        }
        var intPart = mantissa
        if let dot = mantissa.firstIndex(of: ".") {
            intPart = mantissa[..<dot]
            guard validDigits(mantissa[mantissa.index(after: dot)...], radix: 10) else { return nil }
        }
        guard validDigits(intPart, radix: 10), !hasLeadingZero(intPart) else { return nil }
        if var exp = exponent {
            if exp.first == "+" || exp.first == "-" { exp = exp.dropFirst() }
            guard validDigits(exp, radix: 10) else { return nil }
        }
        guard let value = Double(sign + body.replacingUnderscores()) else { return nil }
        return .float(value)
    }

    /// Digits of `radix`, with single underscores only between digits.
    private func validDigits(_ s: Substring, radix: Int) -> Bool {
        guard let first = s.first, let last = s.last, first != "_", last != "_", !s.contains("__") else { return false }
        return s.allSatisfy { $0 == "_" || ($0.hexDigitValue.map { $0 < radix } ?? false) }
    }

    private func hasLeadingZero(_ s: Substring) -> Bool {
        s.count > 1 && s.first == "0"
    }
}

extension Substring {
    func replacingUnderscores() -> String {
        String(filter { $0 != "_" })
    }
}
