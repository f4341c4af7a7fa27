/// The shape of a prepared statement's result as a statement Describe reports it: for each column its name, type
/// and type modifier, or no rows at all (NoData). PostgreSQL refuses to run a prepared statement whose result
/// changed shape since it was prepared (`cached plan must not change result type`, 0A000); the pooler compares
/// shapes to keep that promise when it prepares a client's statement again on another server connection.
/// Column origins (table OID, attribute number) and format codes are left out, as PostgreSQL's own check does.
import NIOCore

struct ResultShape: Equatable {
    private var bytes: [UInt8]

    /// A statement that returns no rows (NoData).
    static let noRows = ResultShape(bytes: [0xFF])

    private init(bytes: [UInt8]) { self.bytes = bytes }

    /// From a RowDescription payload; nil if it is malformed.
    init?(rowDescription payload: ByteBuffer) {
        var payload = payload
        guard let count = payload.readInteger(as: Int16.self), count >= 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(payload.readableBytes)
        for _ in 0..<count {
            guard let nameEnd = payload.readableBytesView.firstIndex(of: 0),
                  let name = payload.readSlice(length: nameEnd - payload.readerIndex + 1),
                  payload.readInteger(as: Int32.self) != nil,  // table OID
                  payload.readInteger(as: Int16.self) != nil,  // attribute number
                  let type = payload.readSlice(length: 4),
                  payload.readInteger(as: Int16.self) != nil,  // type size (follows from the type)
                  let modifier = payload.readSlice(length: 4),
                  payload.readInteger(as: Int16.self) != nil  // format code
            else { return nil }
            bytes.append(contentsOf: name.readableBytesView)
            bytes.append(contentsOf: type.readableBytesView)
            bytes.append(contentsOf: modifier.readableBytesView)
        }
        self.bytes = bytes
    }
}
