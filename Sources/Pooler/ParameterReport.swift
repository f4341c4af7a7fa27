/// What a pool reports to its clients at login: the parameters of its first server connection, with the
/// ParameterStatus messages of those a client cannot set itself encoded once (every login sends them).
import NIOCore
import PostgresWire

final class ParameterReport: Sendable {
    let parameters: [String: String]
    /// ParameterStatus for every parameter except `ClientConnection.trackedParameterNames`, sorted by name.
    let untrackedStatus: ByteBuffer

    init(_ parameters: [String: String]) {
        self.parameters = parameters
        var buffer = ByteBufferAllocator().buffer(capacity: 512)
        for (name, value) in parameters.sorted(by: { $0.key < $1.key })
        where !ClientConnection.trackedParameterNames.contains(name) {
            MessageEncoder.parameterStatus(name, value, into: &buffer)
        }
        self.untrackedStatus = buffer
    }
}
