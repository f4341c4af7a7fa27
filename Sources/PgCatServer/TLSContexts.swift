/// TLS contexts from the config (swift-nio-ssl): the pooler as TLS server for its clients (`tls_certificate`,
/// `tls_private_key`, `client_tls_mode`) and as TLS client of its servers (`server_tls`,
/// `verify_server_certificate`, `server_tls_ca_file`). Built at start and again on every reload.
import Auth
import Config
import Foundation
import NIOCore
import NIOSSL
import Pooler

/// Client side: wraps each client that asked for TLS in a server handshake.
struct NIOSSLClientTLS: ClientTLSProvider {
    let context: NIOSSLContext
    let channelBindingData: [UInt8]?
    func makeHandler() throws -> ChannelHandler { NIOSSLServerHandler(context: context) }
}

/// Server side: what a new server connection does after connecting.
struct ServerTLSPolicy: Sendable {
    let context: NIOSSLContext
    /// `verify_server_certificate`: verify-full, and a server that answers 'N' is refused. Without it TLS is used
    /// when the server offers it and plaintext otherwise (PgCat's behaviour, libpq's `sslmode=prefer`).
    let required: Bool
}

public enum TLSContexts {
    /// Both contexts for `general`, or the problems naming their keys.
    static func build(_ general: GeneralConfig) throws -> (client: NIOSSLClientTLS?, server: ServerTLSPolicy?) {
        var problems: [ConfigProblem] = []
        var client: NIOSSLClientTLS?
        var server: ServerTLSPolicy?
        do {
            client = try clientContext(general)
        } catch let error as TLSProblem {
            problems.append(error.problem)
        }
        do {
            server = try serverPolicy(general)
        } catch let error as TLSProblem {
            problems.append(error.problem)
        }
        if !problems.isEmpty { throw ConfigError(problems: problems) }
        return (client, server)
    }

    /// Checks that the TLS files of `general` load (`pgcat --check` and start-up).
    public static func validate(_ general: GeneralConfig) throws {
        _ = try build(general)
    }

    private static func clientContext(_ g: GeneralConfig) throws -> NIOSSLClientTLS? {
        guard g.clientTLSMode != .disable, let certPath = g.tlsCertificate, let keyPath = g.tlsPrivateKey else {
            return nil
        }
        let chain = try load("general.tls_certificate", certPath) { try NIOSSLCertificate.fromPEMFile($0) }
        guard !chain.isEmpty else {
            throw TLSProblem(keyPath: "general.tls_certificate", reason: "no PEM certificate in \(certPath)")
        }
        let key = try load("general.tls_private_key", keyPath) { try NIOSSLPrivateKey(file: $0, format: .pem) }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                                     privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        do {
            // The leaf certificate (the file's first) is the one clients see and bind to.
            let binding = (try? chain[0].toDERBytes()).flatMap { TLSServerEndPoint.bindingData(certificateDER: $0) }
            return NIOSSLClientTLS(context: try NIOSSLContext(configuration: configuration), channelBindingData: binding)
        } catch {
            throw TLSProblem(keyPath: "general.tls_private_key",
                                reason: "does not match tls_certificate or cannot be used (\(error))")
        }
    }

    private static func serverPolicy(_ g: GeneralConfig) throws -> ServerTLSPolicy? {
        guard g.serverTLS else { return nil }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        if g.verifyServerCertificate {
            configuration.certificateVerification = .fullVerification
            if let caPath = g.serverTLSCAFile {
                let roots = try load("general.server_tls_ca_file", caPath) { try NIOSSLCertificate.fromPEMFile($0) }
                guard !roots.isEmpty else {
                    throw TLSProblem(keyPath: "general.server_tls_ca_file", reason: "no PEM certificate in \(caPath)")
                }
                configuration.trustRoots = .certificates(roots)
            }
        } else {
            configuration.certificateVerification = .none
        }
        do {
            return ServerTLSPolicy(context: try NIOSSLContext(configuration: configuration),
                                   required: g.verifyServerCertificate)
        } catch {
            throw TLSProblem(keyPath: "general.server_tls", reason: "cannot set up TLS to servers (\(error))")
        }
    }

    /// Reads a PEM file, naming the key and the path when that fails (NIOSSL's own errors say neither).
    private static func load<T>(_ key: String, _ path: String, _ read: (String) throws -> T) throws -> T {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw TLSProblem(keyPath: key, reason: "cannot read \(path)")
        }
        do {
            return try read(path)
        } catch {
            throw TLSProblem(keyPath: key, reason: "\(path) is not a valid PEM file (\(error))")
        }
    }
}

/// One problem with a TLS key, collected into a `ConfigError`.
private struct TLSProblem: Error {
    let problem: ConfigProblem
    init(keyPath: String, reason: String) { problem = ConfigProblem(keyPath: keyPath, reason: reason) }
}
