/// A named prepared statement as one client sees it.
import NIOCore

struct ClientStatement: Equatable {
    /// The name used on servers (shared by all clients of the pool for the same definition).
    var serverName: String
    /// Parse payload after the name: query, parameter count and types.
    var definition: ByteBuffer
}
