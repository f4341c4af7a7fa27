/// ORDER BY across shards: each shard sorted its rows; merging them needs the same order, computed here from the
/// text values. Only orders that can be reproduced exactly are accepted (numbers, booleans, ISO dates and
/// timestamps, and text compared byte by byte, which is what COLLATE "C" means); anything else is refused rather
/// than merged in a different order than PostgreSQL would use.
import NIOCore
import PostgresWire
import QueryParser

struct RowOrder {
    enum Kind {
        case integer, float, numeric, bool, bytes, paddedBytes, date, timestamp
    }

    struct Key {
        var index: Int
        var name: String
        var kind: Kind
        var descending: Bool
        var nullsFirst: Bool
    }

    enum Value {
        case int(Int64)
        /// Ordered class first (-infinity, finite, +infinity, NaN), then the number.
        case real(rank: Int, Double)
        case decimal(Decimal)
        case bytes([UInt8])
        /// Ordered class first (-infinity, finite, +infinity), then microseconds.
        case instant(rank: Int, Int64)
    }

    let keys: [Key]

    static let textCollations: Set<String> = ["C", "POSIX", "ucs_basic"]

    static func make(_ sortKeys: [SelectShape.SortKey], description: RowDescription) -> Result<RowOrder, FanOutMerger.Failure> {
        var keys: [Key] = []
        for sortKey in sortKeys {
            let index: Int
            switch sortKey.column {
            case .position(let position):
                guard position <= description.columns.count else {
                    return .failure(.init(.featureNotSupported, "ORDER BY \(position) is not an output column"))
                }
                index = position - 1
            case .name(let name):
                let matches = description.columns.indices.filter { description.columns[$0].name == name }
                guard matches.count == 1 else {
                    return .failure(.init(.featureNotSupported, matches.isEmpty
                        ? "ORDER BY \(name) across shards needs \(name) in the select list"
                        : "ORDER BY \(name) is ambiguous: several output columns have that name"))
                }
                index = matches[0]
            }
            let column = description.columns[index]
            guard column.format == 0 else {
                return .failure(.init(.featureNotSupported, "ORDER BY \(column.name) across shards needs text results"))
            }
            let kind: Kind
            switch column.typeOID {
            case 20, 21, 23, 26: kind = .integer
            case 700, 701: kind = .float
            case 1700: kind = .numeric
            case 16: kind = .bool
            case 19, 2950: kind = .bytes  // name (always collation "C"), uuid
            case 1082: kind = .date
            case 1114, 1184: kind = .timestamp
            case 25, 1043, 1042, 18:
                guard let collation = sortKey.collation, textCollations.contains(collation) else {
                    return .failure(.init(.featureNotSupported,
                        "ORDER BY \(column.name) across shards compares text: write \(column.name) COLLATE \"C\" "
                        + "(the shards' own collation cannot be reproduced when merging)"))
                }
                kind = column.typeOID == 1042 ? .paddedBytes : .bytes
            default:
                return .failure(.init(.featureNotSupported,
                    "ORDER BY \(column.name) across shards: its type (OID \(column.typeOID)) cannot be merged"))
            }
            keys.append(Key(index: index, name: column.name, kind: kind, descending: sortKey.descending,
                            nullsFirst: sortKey.nullsFirst ?? sortKey.descending))
        }
        return .success(RowOrder(keys: keys))
    }

    /// The sort values of a DataRow payload (nil for NULL).
    func keys(of row: ByteBuffer) throws -> [Value?] {
        var fields: [[UInt8]?] = []
        var payload = row
        let count = Int(payload.readInteger(as: Int16.self) ?? 0)
        for _ in 0..<count {
            guard let length = payload.readInteger(as: Int32.self) else { break }
            fields.append(length < 0 ? nil : payload.readBytes(length: Int(length)))
        }
        return try keys.map { key in
            guard key.index < fields.count, let bytes = fields[key.index] else { return nil }
            guard let value = Self.value(bytes, kind: key.kind) else {
                throw FanOutMerger.Failure(.featureNotSupported, "ORDER BY \(key.name) across shards: cannot compare "
                    + "\"\(String(decoding: bytes.prefix(40), as: UTF8.self))\" (dates and times need DateStyle ISO)")
            }
            return value
        }
    }

    /// -1, 0 or 1 as PostgreSQL would order the rows.
    func compare(_ a: [Value?], _ b: [Value?]) -> Int {
        for (i, key) in keys.enumerated() {
            let result: Int
            switch (a[i], b[i]) {
            case (nil, nil): result = 0
            case (nil, _): result = key.nullsFirst ? -1 : 1
            case (_, nil): result = key.nullsFirst ? 1 : -1
            case (let x?, let y?):
                let c = Self.compare(x, y)
                result = key.descending ? -c : c
            }
            if result != 0 { return result }
        }
        return 0
    }

    static func compare(_ a: Value, _ b: Value) -> Int {
        switch (a, b) {
        case (.int(let x), .int(let y)): return x < y ? -1 : x > y ? 1 : 0
        case (.real(let r1, let x), .real(let r2, let y)):
            if r1 != r2 { return r1 < r2 ? -1 : 1 }
            return x < y ? -1 : x > y ? 1 : 0
        case (.decimal(let x), .decimal(let y)): return x.compare(y)
        case (.bytes(let x), .bytes(let y)): return x.lexicographicallyPrecedes(y) ? -1 : x == y ? 0 : 1
        case (.instant(let r1, let x), .instant(let r2, let y)):
            if r1 != r2 { return r1 < r2 ? -1 : 1 }
            return x < y ? -1 : x > y ? 1 : 0
        default: return 0
        }
    }

    static func value(_ bytes: [UInt8], kind: Kind) -> Value? {
        let text = String(decoding: bytes, as: UTF8.self)
        switch kind {
        case .integer:
            return Int64(text).map(Value.int)
        case .float:
            switch text {
            case "NaN": return .real(rank: 3, 0)
            case "Infinity": return .real(rank: 2, 0)
            case "-Infinity": return .real(rank: 0, 0)
            default: return Double(text).map { .real(rank: 1, $0) }
            }
        case .numeric:
            return Decimal(text).map(Value.decimal)
        case .bool:
            return text == "t" ? .int(1) : text == "f" ? .int(0) : nil
        case .bytes:
            return .bytes(bytes)
        case .paddedBytes:  // char(n) ignores trailing spaces when comparing
            return .bytes(Array(bytes.reversed().drop { $0 == 0x20 }.reversed()))
        case .date, .timestamp:
            return Instant(text).map { .instant(rank: $0.rank, $0.microseconds) }
        }
    }

    /// A numeric's text as sign, digits before and after the point, for exact comparison.
    struct Decimal {
        /// 0 = -Infinity, 1 = finite, 2 = +Infinity, 3 = NaN (PostgreSQL orders NaN above everything).
        var rank: Int
        var negative = false
        var integer: [UInt8] = []
        var fraction: [UInt8] = []

        init?(_ text: String) {
            switch text {
            case "NaN": rank = 3; return
            case "Infinity": rank = 2; return
            case "-Infinity": rank = 0; return
            default: rank = 1
            }
            var digits = Array(text.utf8)
            if digits.first == UInt8(ascii: "-") { negative = true; digits.removeFirst() }
            let parts = digits.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
            guard (1...2).contains(parts.count), parts.allSatisfy({ $0.allSatisfy { (48...57).contains($0) } }) else {
                return nil
            }
            integer = Array(parts[0].drop { $0 == 48 })
            fraction = parts.count == 2 ? Array(parts[1].reversed().drop { $0 == 48 }.reversed()) : []
            if integer.isEmpty && fraction.isEmpty { negative = false }  // -0
        }

        func compare(_ other: Decimal) -> Int {
            if rank != other.rank || rank != 1 { return rank < other.rank ? -1 : rank > other.rank ? 1 : 0 }
            if negative != other.negative { return negative ? -1 : 1 }
            var magnitude: Int
            if integer.count != other.integer.count {
                magnitude = integer.count < other.integer.count ? -1 : 1
            } else if integer != other.integer {
                magnitude = integer.lexicographicallyPrecedes(other.integer) ? -1 : 1
            } else if fraction == other.fraction {
                magnitude = 0
            } else {
                magnitude = fraction.lexicographicallyPrecedes(other.fraction) ? -1 : 1
            }
            return negative ? -magnitude : magnitude
        }
    }

    /// An ISO date or timestamp (with or without a UTC offset) as microseconds since 2000-01-01 UTC.
    /// A date sorts as its midnight.
    struct Instant {
        var rank: Int
        var microseconds: Int64

        init?(_ text: String) {
            switch text {
            case "infinity": rank = 2; microseconds = 0; return
            case "-infinity": rank = 0; microseconds = 0; return
            default: rank = 1
            }
            let bytes = Array(text.utf8)
            var i = 0
            func number(_ count: Int) -> Int? {
                guard i + count <= bytes.count else { return nil }
                var value = 0
                for b in bytes[i..<(i + count)] {
                    guard (48...57).contains(b) else { return nil }
                    value = value * 10 + Int(b - 48)
                }
                i += count
                return value
            }
            func expect(_ c: Character) -> Bool {
                guard i < bytes.count, bytes[i] == c.asciiValue! else { return false }
                i += 1
                return true
            }
            guard let year = number(4), expect("-"), let month = number(2), expect("-"), let day = number(2) else {
                return nil
            }
            var seconds = Int64(Self.days(year: year, month: month, day: day)) * 86_400
            var micros: Int64 = 0
            if i < bytes.count {
                guard expect(" "), let h = number(2), expect(":"), let m = number(2), expect(":"), let s = number(2)
                else { return nil }
                seconds += Int64(h * 3600 + m * 60 + s)
                if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
                    i += 1
                    var scale: Int64 = 100_000
                    while i < bytes.count, (48...57).contains(bytes[i]) {
                        micros += Int64(bytes[i] - 48) * scale
                        scale /= 10
                        i += 1
                    }
                }
                if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") {
                    let sign: Int64 = bytes[i] == UInt8(ascii: "-") ? -1 : 1
                    i += 1
                    guard let oh = number(2) else { return nil }
                    var offset = oh * 3600
                    if expect(":") { guard let om = number(2) else { return nil }; offset += om * 60 }
                    if expect(":") { guard let os = number(2) else { return nil }; offset += os }
                    seconds -= sign * Int64(offset)
                }
            }
            guard i == bytes.count else { return nil }  // " BC" and other styles are refused
            microseconds = seconds * 1_000_000 + micros
        }

        /// Days from 2000-01-01 (proleptic Gregorian).
        static func days(year: Int, month: Int, day: Int) -> Int {
            let y = month <= 2 ? year - 1 : year
            let era = (y >= 0 ? y : y - 399) / 400
            let yoe = y - era * 400
            let mp = (month + 9) % 12
            let doy = (153 * mp + 2) / 5 + day - 1
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
            return era * 146_097 + doe - 719_468 - 10_957
        }
    }
}
