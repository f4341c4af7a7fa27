/// Why a SCRAM-SHA-256 exchange failed, on either side.

public enum SCRAMError: Error, Sendable, Equatable {
    /// The peer's message does not follow RFC 5802's grammar; the reason says where. Server side: 08P01.
    case malformedMessage(String)
    /// The client binds to a channel-binding type other than `tls-server-end-point`.
    case unsupportedChannelBindingType(String)
    /// The client can bind (`y`) but thinks the server cannot, while the server offered SCRAM-SHA-256-PLUS: a
    /// downgrade by someone in between, or a confused client.
    case channelBindingNegotiation
    /// The client gave an authorization identity (`a=`), which PostgreSQL does not support either.
    case unsupportedAuthorizationIdentity
    /// A mandatory extension (`m=`) the peer requires and nobody supports.
    case unsupportedExtension
    /// The channel-binding attribute (`c=`) of the client-final-message does not repeat its GS2 header (and, when
    /// binding, the server certificate's hash).
    case channelBindingMismatch
    /// The nonce does not extend the client's nonce (client side) or is not the one agreed (server side).
    case nonceMismatch
    /// Wrong password, or unknown user: the two are deliberately indistinguishable. The caller sends
    /// FATAL 28P01 `password authentication failed for user "<u>"`.
    case invalidProof
    /// The server's signature (`v=`) is wrong: it does not know the password, so do not trust it.
    case serverSignatureMismatch
    /// The server ended the exchange with `e=<value>`.
    case serverError(String)
    /// A message arrived in a state that does not expect it (out of order, or after the exchange ended).
    case unexpectedMessage
}

extension SCRAMError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .malformedMessage(let reason): "malformed SCRAM message: \(reason)"
        case .unsupportedChannelBindingType(let type): "unsupported SCRAM channel-binding type \"\(type)\""
        case .channelBindingNegotiation:
            "SCRAM channel binding negotiation error: the client supports SCRAM channel binding but thinks the server "
                + "does not; this server does support channel binding"
        case .unsupportedAuthorizationIdentity: "SCRAM authorization identity is not supported"
        case .unsupportedExtension: "SCRAM mandatory extension is not supported"
        case .channelBindingMismatch: "SCRAM channel binding check failed"
        case .nonceMismatch: "SCRAM nonce mismatch"
        case .invalidProof: "SCRAM proof is invalid"
        case .serverSignatureMismatch: "SCRAM server signature is invalid"
        case .serverError(let value): "SCRAM server error: \(value)"
        case .unexpectedMessage: "unexpected SCRAM message"
        }
    }
}
