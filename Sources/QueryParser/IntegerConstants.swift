/// libpg_query 15's JSON (Debian's libpg-query-dev 15-4.x) writes an integer constant's value only when it is
/// positive: `-50` comes out as `"ival":{}`, the same as `0`, and a literal beyond int4 (`4294967296`) as a float
/// string (`"fval":{"fval":"4294967296"}`). Sharding keys, model keys and LIMITs read those values, so a negative key
/// would be routed as key 0 and a bigint key not at all. This pass reads such constants again from the query text
/// at their `location` (a byte offset): a negative integer gets its value, a float string that is an integer within
/// int64 becomes an `ival`, and an empty `ival` at a minus sign with no readable number after it loses its `ival`
/// (unknown, not 0).
extension ParseTreeJSON {
    /// Whether the tree may hold such a constant (a byte search of libpg_query's output, before it is read).
    static func mayNeedIntegerRepair(_ json: UnsafeBufferPointer<UInt8>) -> Bool {
        contains(json, #""ival":{}"#) || contains(json, #""fval":{"fval":""#)
    }

    /// The tree with its integer constants read from `source`, the query text the tree was parsed from.
    func repairingIntegerConstants(source: UnsafeBufferPointer<UInt8>) -> ParseTreeJSON {
        switch self {
        case .object(var members):
            for index in members.indices {
                if members[index].key == "A_Const", case .object(let constant) = members[index].value {
                    members[index].value = .object(Self.repairedConstant(constant, source: source))
                } else {
                    members[index].value = members[index].value.repairingIntegerConstants(source: source)
                }
            }
            return .object(members)
        case .array(let values):
            return .array(values.map { $0.repairingIntegerConstants(source: source) })
        default:
            return self
        }
    }

    private static func repairedConstant(_ members: [Member], source: UnsafeBufferPointer<UInt8>) -> [Member] {
        guard let index = members.firstIndex(where: { $0.key == "ival" || $0.key == "fval" }) else { return members }
        var members = members
        switch (members[index].key, members[index].value) {
        case ("ival", .object(let inner)) where inner.isEmpty:
            // 0, or a negative value left out: the text says which.
            let location = members.first { $0.key == "location" }.flatMap { member -> Int? in
                if case .number(let digits) = member.value { return Int(digits) }
                return nil
            }
            guard let location, let value = integerLiteral(in: source, at: location) else {
                // A minus sign but no readable number (a comment after it): unknown rather than 0. Anything else is
                // a constant the grammar made up (READ WRITE is transaction_read_only 0): as it was.
                if let location, location >= 0, location < source.count, source[location] == UInt8(ascii: "-") {
                    members.remove(at: index)
                }
                return members
            }
            if value != 0 { members[index].value = .object([Member(key: "ival", value: .number(String(value)))]) }
        case ("fval", .object(let inner)):
            guard let text = inner.first(where: { $0.key == "fval" })?.value.stringValue, let value = Int64(text)
            else { return members }
            members[index] = Member(key: "ival", value: .object([Member(key: "ival", value: .number(String(value)))]))
        default:
            break
        }
        return members
    }

    /// The integer written at byte `location` of `source`: digits, or a minus sign, white space or parentheses and
    /// digits (the parser folds `- 5` and `-(5)` into the constant -5); nil for anything else or beyond int64.
    static func integerLiteral(in source: UnsafeBufferPointer<UInt8>, at location: Int) -> Int64? {
        guard location >= 0, location < source.count else { return nil }
        var index = location
        let negative = source[index] == UInt8(ascii: "-")
        if negative {  // (white space and parentheses may follow the sign: `- 5`, `-(5)`)
            index += 1
            while index < source.count, [0x20, 0x09, 0x0A, 0x0D, 0x0C, 0x28].contains(source[index]) { index += 1 }
        }
        let start = index
        while index < source.count, source[index] >= UInt8(ascii: "0"), source[index] <= UInt8(ascii: "9") { index += 1 }
        guard index > start else { return nil }
        if index < source.count {  // (a number runs into no letter, dot or underscore: 1.5, 1e3, 0x1F)
            let next = source[index] | 0x20
            guard !(next >= UInt8(ascii: "a") && next <= UInt8(ascii: "z")), source[index] != UInt8(ascii: "."),
                  source[index] != UInt8(ascii: "_") else { return nil }
        }
        let digits = String(decoding: UnsafeBufferPointer(rebasing: source[start..<index]), as: UTF8.self)
        return Int64((negative ? "-" : "") + digits)
    }

    private static func contains(_ bytes: UnsafeBufferPointer<UInt8>, _ needle: StaticString) -> Bool {
        let length = needle.utf8CodeUnitCount
        guard bytes.count >= length else { return false }
        let pattern = UnsafeBufferPointer(start: needle.utf8Start, count: length)
        var start = 0
        while start <= bytes.count - length {
            if bytes[start] == pattern[0], (1..<length).allSatisfy({ bytes[start + $0] == pattern[$0] }) { return true }
            start += 1
        }
        return false
    }
}
