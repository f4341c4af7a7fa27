/// Runs the pooler until a signal: SIGHUP reloads the config file; the first SIGINT/SIGTERM drains (up to
/// `shutdown_timeout`), a second one (or SIGQUIT) exits at once.
import Config
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PgCatServer
import Pooler
import UnixSignals

struct Runner {
    let config: PgCatConfig
    let path: String
    let logger: Logger

    func run() async throws {
        let server = PoolerServer(config: config, logger: logger)
        let path = self.path
        let logger = self.logger
        server.runtime.reloadHandler = { Self.load(path, logger: logger) }
        // Admin SHUTDOWN takes the same way as a signal (PgCat sends itself SIGINT).
        server.runtime.shutdownHandler = { kill(getpid(), SIGINT) }
        // Trapped before the listener opens: a signal that arrives once clients can connect must never meet the
        // default action (SIGTERM would kill instead of drain). Signals during the start wait in the sequence.
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm, .sigquit, .sighup)
        try await server.start()
        var draining: Task<Void, Never>?
        for await signal in signals {
            if signal == .sighup {
                logger.notice("SIGHUP: reloading the config", metadata: ["path": "\(path)"])
                _ = server.runtime.reload()
                continue
            }
            if signal == .sigquit || draining != nil {
                logger.notice("exiting immediately", metadata: ["signal": "\(signal)"])
                exit(0)
            }
            let timeout = server.runtime.config.general.shutdownTimeout
            logger.notice("shutting down: draining clients", metadata: [
                "signal": "\(signal)", "shutdown_timeout_ms": "\(timeout)"])
            draining = Task {
                await server.drain(timeout: .milliseconds(Int64(timeout)))
                await server.stop()
                exit(0)
            }
        }
    }

    /// The warnings of the config file as last read (start-up or reload).
    static let lastWarnings = NIOLockedValueBox<[String]>([])

    /// Reads and validates the config file for a reload; problems name their keys.
    static func load(_ path: String, logger: Logger) -> Result<PgCatConfig, ReloadError> {
        do {
            let loaded = try ConfigLoader.load(path: path)
            let warnings = loaded.warnings.map { "\($0)" }
            // Logged when they change, not at every re-read (autoreload reads the file every few seconds).
            let changed = lastWarnings.withLockedValue { last in
                defer { last = warnings }
                return last != warnings
            }
            if changed {
                for warning in warnings { logger.warning("config warning", metadata: ["warning": "\(warning)"]) }
            }
            return .success(loaded.config)
        } catch let error as ConfigError {
            return .failure(ReloadError("invalid config \(path): "
                + error.problems.map(\.description).joined(separator: "; ")))
        } catch {
            return .failure(ReloadError("cannot load \(path): \(error)"))
        }
    }
}
