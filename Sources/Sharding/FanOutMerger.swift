/// Puts together the client's reply from every shard's reply to the same statement (`fan_out`). Pure: complete
/// replies in (each up to its ReadyForQuery), the bytes for the client out.
import NIOCore
import PostgresWire
import QueryParser

public enum FanOutMerger {
    public struct Failure: Error, Equatable, Sendable {
        public var state: SQLState
        public var message: String
        public init(_ state: SQLState, _ message: String) {
            self.state = state
            self.message = message
        }
    }

    /// The reply for the client. A shard that failed answers for all (the first one by shard order); otherwise a
    /// broadcast gets shard 0's reply and a SELECT the rows of all shards, merged.
    public static func merge(_ replies: [ByteBuffer], plan: FanOutPlan,
                             allocator: ByteBufferAllocator = ByteBufferAllocator()) -> Result<ByteBuffer, Failure> {
        var shards: [[Frame]] = []
        for var reply in replies {
            var frames: [Frame] = []
            do {
                while let frame = try Frame.read(from: &reply) { frames.append(frame) }
            } catch {
                return .failure(Failure(.protocolViolation, "a shard sent an invalid reply: \(error)"))
            }
            shards.append(frames)
        }
        guard let first = shards.first else { return .failure(Failure(.internalError, "no shard replied")) }
        if let failed = shards.first(where: { $0.contains { $0.id == BackendID.errorResponse } }) {
            return .success(encode(failed, allocator: allocator))
        }
        switch plan {
        case .select(let shape):
            return mergeRows(shards, shape: shape, allocator: allocator)
        default:
            return .success(encode(first, allocator: allocator))
        }
    }

    private static func encode(_ frames: [Frame], allocator: ByteBufferAllocator) -> ByteBuffer {
        var out = allocator.buffer(capacity: frames.reduce(0) { $0 + $1.payload.readableBytes + 5 })
        for frame in frames { append(frame, to: &out) }
        return out
    }

    private static func append(_ frame: Frame, to out: inout ByteBuffer) {
        var payload = frame.payload
        out.writeInteger(frame.id)
        out.writeInteger(Int32(payload.readableBytes + 4))
        out.writeBuffer(&payload)
    }

    private static func mergeRows(_ shards: [[Frame]], shape: SelectShape,
                                  allocator: ByteBufferAllocator) -> Result<ByteBuffer, Failure> {
        let template = shards[0]
        let isBody: (Frame) -> Bool = {
            [BackendID.dataRow, BackendID.commandComplete, BackendID.emptyQueryResponse, BackendID.readyForQuery,
             BackendID.portalSuspended].contains($0.id)
        }
        let prefix = Array(template.prefix { !isBody($0) })
        let description = prefix.first { $0.id == BackendID.rowDescription }.map(RowDescription.init)
        for shard in shards.dropFirst() {
            let other = shard.first { $0.id == BackendID.rowDescription }.map(RowDescription.init)
            if other?.shape != description?.shape {
                return .failure(Failure(.featureNotSupported, "the shards returned different columns for this query"))
            }
        }
        var rows: [ByteBuffer] = shards.flatMap { $0.filter { $0.id == BackendID.dataRow }.map(\.payload) }
        if !shape.orderBy.isEmpty {
            guard let description else {
                return .failure(Failure(.featureNotSupported, "ORDER BY across shards needs the row description"))
            }
            switch RowOrder.make(shape.orderBy, description: description) {
            case .failure(let failure):
                return .failure(failure)
            case .success(let order):
                do {
                    let keyed = try rows.map { row in (row, try order.keys(of: row)) }
                    rows = keyed.enumerated().sorted { a, b in
                        let c = order.compare(a.element.1, b.element.1)
                        return c != 0 ? c < 0 : a.offset < b.offset  // stable: shard order among equals
                    }.map(\.element.0)
                } catch let failure as Failure {
                    return .failure(failure)
                } catch {
                    return .failure(Failure(.internalError, "\(error)"))
                }
            }
        }
        if let limit = shape.limit, rows.count > limit { rows = Array(rows.prefix(max(0, limit))) }
        var out = allocator.buffer(capacity: rows.reduce(256) { $0 + $1.readableBytes + 5 })
        for frame in prefix { append(frame, to: &out) }
        for row in rows { append(Frame(id: BackendID.dataRow, payload: row), to: &out) }
        MessageEncoder.commandComplete("SELECT \(rows.count)", into: &out)
        MessageEncoder.readyForQuery(.idle, into: &out)
        return .success(out)
    }
}

/// The columns of a RowDescription: names, type OIDs and format codes.
struct RowDescription {
    struct Column: Equatable {
        var name: String
        var typeOID: UInt32
        var format: Int16
    }
    var columns: [Column] = []

    /// What must agree across shards (table OIDs and attribute numbers differ between databases).
    var shape: [Column] { columns }

    init(_ frame: Frame) {
        var payload = frame.payload
        let count = payload.readInteger(as: Int16.self) ?? 0
        for _ in 0..<max(0, Int(count)) {
            guard let name = payload.readNullTerminatedString(),
                  let (_, _, typeOID, _, _, format) = payload.readMultipleIntegers(
                      as: (UInt32, Int16, UInt32, Int16, Int32, Int16).self) else { break }
            columns.append(Column(name: name, typeOID: typeOID, format: format))
        }
    }
}
