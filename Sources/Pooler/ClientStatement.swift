/// A named prepared statement as one client sees it.
import Failover
import NIOCore

struct ClientStatement: Equatable {
    /// The name used on servers (shared by all clients of the pool for the same definition).
    var serverName: String
    /// Parse payload after the name: query, parameter count and types.
    var definition: ByteBuffer
    /// Read/write intent of its text, worked out on first use for routing (`.some(nil)`: it does not parse).
    var routingIntent: ReadWriteRouting.Intent?? = nil
    /// Its text calls `set_config`: a server that runs it needs RESET ALL before the next client.
    var setsConfig = false
    /// The result shape the client learned from a Describe of it: its Binds must not get rows of another shape.
    var resultShape: ResultShape?
    /// The pooler answered the client's Parse itself, from a server's copy prepared before it or without a server,
    /// and the statement has not been used since: a Describe of it as its first use prepares the copy afresh
    /// (`takeFreshCopy`).
    var awaitsFreshCopy = false

    init(serverName: String, definition: ByteBuffer, setsConfig: Bool = false) {
        self.serverName = serverName
        self.definition = definition
        self.setsConfig = setsConfig
    }

    static func == (a: ClientStatement, b: ClientStatement) -> Bool {
        a.serverName == b.serverName && a.definition == b.definition
    }
}
