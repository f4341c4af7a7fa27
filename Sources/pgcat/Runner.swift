/// Runs the pooler until a signal: the first SIGINT/SIGTERM drains (up to `shutdown_timeout`), a second exits at once.
import Config
import Foundation
import Logging
import NIOCore
import PgCatServer
import UnixSignals

struct Runner {
    let config: PgCatConfig
    let logger: Logger

    func run() async throws {
        let server = PoolerServer(config: config, logger: logger)
        try await server.start()
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm, .sigquit)
        var draining: Task<Void, Never>?
        for await signal in signals {
            if signal == .sigquit || draining != nil {
                logger.notice("exiting immediately", metadata: ["signal": "\(signal)"])
                exit(0)
            }
            logger.notice("shutting down: draining clients", metadata: [
                "signal": "\(signal)", "shutdown_timeout_ms": "\(config.general.shutdownTimeout)"])
            draining = Task {
                await server.drain(timeout: .milliseconds(Int64(config.general.shutdownTimeout)))
                await server.stop()
                exit(0)
            }
        }
    }
}
