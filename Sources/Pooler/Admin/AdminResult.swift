/// Result sets of the admin console as wire messages: RowDescription with PgBouncer's column types, DataRows in
/// text format, CommandComplete.
import NIOCore
import PostgresWire

struct AdminResult {
    enum ColumnType {
        case text, int4, int8, numeric, bool

        var oid: Int32 {
            switch self {
            case .text: return 25
            case .int4: return 23
            case .int8: return 20
            case .numeric: return 1700
            case .bool: return 16
            }
        }

        var size: Int16 {
            switch self {
            case .text, .numeric: return -1
            case .int4: return 4
            case .int8: return 8
            case .bool: return 1
            }
        }
    }

    enum Value: Equatable {
        case text(String)
        case int(Int)
        case bool(Bool)
        case null

        var wire: String? {
            switch self {
            case .text(let value): return value
            case .int(let value): return String(value)
            case .bool(let value): return value ? "t" : "f"
            case .null: return nil
            }
        }
    }

    var columns: [(name: String, type: ColumnType)]
    var rows: [[Value]] = []
    /// The CommandComplete tag.
    var tag: String

    init(_ columns: [(String, ColumnType)], tag: String = "SHOW") {
        self.columns = columns.map { (name: $0.0, type: $0.1) }
        self.tag = tag
    }

    mutating func append(_ row: [Value]) {
        precondition(row.count == columns.count, "admin row has \(row.count) values for \(columns.count) columns")
        rows.append(row)
    }

    func encode(into buffer: inout ByteBuffer) {
        if !columns.isEmpty {
            MessageEncoder.frame(BackendID.rowDescription, into: &buffer) {
                $0.writeInteger(Int16(columns.count))
                for column in columns {
                    $0.writeNullTerminatedString(column.name)
                    $0.writeMultipleIntegers(Int32(0), Int16(0), column.type.oid, column.type.size, Int32(-1), Int16(0))
                }
            }
            for row in rows { MessageEncoder.dataRow(row.map(\.wire), into: &buffer) }
        }
        MessageEncoder.commandComplete(tag, into: &buffer)
    }
}
