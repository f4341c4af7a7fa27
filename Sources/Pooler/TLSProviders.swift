/// TLS is the assembly layer's job (swift-nio-ssl lives in PgCatServer); the pooler asks through these.
import Config
import NIOConcurrencyHelpers
import NIOCore

/// Makes the handler that turns a client's socket into a TLS session after the pooler answered 'S' to its
/// SSLRequest. Built from `tls_certificate` and `tls_private_key`, rebuilt on every reload.
public protocol ClientTLSProvider: Sendable {
    /// Called on the client's event loop; the handler goes first in its pipeline.
    func makeHandler() throws -> ChannelHandler
    /// The `tls-server-end-point` hash of the certificate the handler presents (SCRAM-SHA-256-PLUS signs it), or
    /// nil when the certificate has none: -PLUS is then not offered.
    var channelBindingData: [UInt8]? { get }
}

/// Builds the TLS contexts for a config. The result is installed only when the whole reload is accepted;
/// a failure names the key at fault and the old contexts (and config) stay.
public typealias TLSPreparer = @Sendable (GeneralConfig) -> Result<PreparedTLS, ReloadError>

/// TLS contexts built from a config, not yet in force.
public struct PreparedTLS: Sendable {
    public var client: (any ClientTLSProvider)?
    /// Puts the server-side context in force (the connector holds it).
    public var installServerSide: @Sendable () -> Void

    public init(client: (any ClientTLSProvider)?, installServerSide: @escaping @Sendable () -> Void) {
        self.client = client
        self.installServerSide = installServerSide
    }
}

extension PoolerRuntime {
    /// The client-side TLS context in force (nil: SSLRequest is answered 'N').
    public var clientTLS: (any ClientTLSProvider)? { clientTLSBox.withLockedValue { $0 } }

    /// Puts prepared contexts in force.
    public func install(_ tls: PreparedTLS) {
        clientTLSBox.withLockedValue { $0 = tls.client }
        tls.installServerSide()
    }
}
