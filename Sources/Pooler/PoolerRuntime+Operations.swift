/// Operations on the running pooler (reload, pause, kill, shutdown) and what the admin console reads.
import Config
import Foundation
import NIOCore

/// Why a reload was refused; the old config stays in force.
public struct ReloadError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension PoolerRuntime {
    /// What a reload changed.
    public struct ReloadSummary: Sendable, Equatable {
        public var changed: Bool
        public var poolsReplaced: Int
    }

    /// Re-reads the config file through `reloadHandler` and applies it.
    public func reload() -> Result<ReloadSummary, ReloadError> {
        guard let reloadHandler else { return .failure(ReloadError("reload is not available")) }
        switch reloadHandler() {
        case .success(let config):
            return apply(config)
        case .failure(let error):
            logger.error("reload refused: keeping the current config", metadata: ["error": "\(error.message)"])
            return .failure(error)
        }
    }

    /// Swaps in `config`: unchanged pools are kept, changed ones replaced (clients move to the new pool at their next
    /// transaction; the old one's connections close as they come back), removed ones retired. The listener's host
    /// and port cannot change while running.
    public func apply(_ config: PgCatConfig) -> Result<ReloadSummary, ReloadError> {
        let current = self.config
        if config.general.host != current.general.host || config.general.port != current.general.port {
            let error = ReloadError("general.host and general.port cannot change on reload (listening on "
                + "\(current.general.host):\(current.general.port)); restart pgcat to move the listener")
            logger.error("reload refused: keeping the current config", metadata: ["error": "\(error.message)"])
            return .failure(error)
        }
        // Certificates are re-read on every reload, also when the config text did not change.
        if let tlsPreparer {
            switch tlsPreparer(config.general) {
            case .success(let tls):
                install(tls)
            case .failure(let error):
                logger.error("reload refused: keeping the current config", metadata: ["error": "\(error.message)"])
                return .failure(error)
            }
        }
        guard config != current else { return .success(ReloadSummary(changed: false, poolsReplaced: 0)) }
        let admin = Self.adminAuth(config.general, reusing: lock.withLock { adminAuth })
        let replaced: [ConnectionPool] = lock.withLock {
            let built = build(config, reusing: snapshot)
            snapshot = built.snapshot
            adminAuth = admin
            retiredPools += built.replaced
            return built.replaced
        }
        for pool in replaced {
            pool.hasSuccessor.store(self.pool(database: pool.database, user: pool.user) != nil, ordering: .relaxed)
            pool.retire()
        }
        for pool in allPools {
            pool.banTime.store(config.general.banTime)
            pool.checkoutCheckDelay.store(config.general.healthcheckDelay)
            pool.checkoutCheckTimeout.store(config.general.healthcheckTimeout)
        }
        logger.notice("config reloaded", metadata: ["pools_replaced": "\(replaced.count)",
                                                    "pools": "\(config.pools.count)"])
        return .success(ReloadSummary(changed: true, poolsReplaced: replaced.count))
    }

    /// Pools matching a selector: all, one database's, or one (database, user).
    func pools(database: String?, user: String?) -> [ConnectionPool] {
        allPools.filter { pool in
            (database == nil || pool.database == database) && (user == nil || pool.user == user)
        }.sorted { ($0.database, $0.user) < ($1.database, $1.user) }
    }

    /// Pools a reload replaced that still have connections (SHOW SERVERS lists those too).
    var retiredPoolsWithConnections: [ConnectionPool] {
        lock.withLock {
            retiredPools.removeAll { $0.connectionCounts().allSatisfy { $0 == 0 } }
            return retiredPools
        }
    }

    /// Every connected (non-admin) client.
    var clients: [ClientConnection] {
        lock.withLock { cancelTargets.values.compactMap(\.client) }
    }

    /// KILL: closes a database's clients and server connections and pauses its pools until RESUME.
    func kill(database: String) -> Bool {
        let targets = pools(database: database, user: nil)
        guard !targets.isEmpty else { return false }
        for pool in targets { pool.pause() }
        // The clients first, each on its loop, and the server connections once they all have been told: a client
        // whose statement was running would otherwise see its server go first and report 08006, not the KILL.
        let told = clients.filter { $0.database == database }.map { client in
            client.eventLoop.submit { client.killed() }
        }
        guard let loop = told.first?.eventLoop else {
            for pool in targets { pool.closeAll() }
            return true
        }
        EventLoopFuture.whenAllComplete(told, on: loop).whenComplete { _ in
            for pool in targets { pool.closeAll() }
        }
        return true
    }

    func requestShutdown() -> Bool {
        guard let shutdownHandler else { return false }
        shutdownHandler()
        return true
    }

    var adminUser: UserAuth? { lock.withLock { adminAuth } }
}

extension ClientConnection {
    /// Admin KILL of this client's database.
    func killed() {
        if case .closed = phase { return }
        fatal(.adminShutdown, "terminating connection due to administrator command (KILL)")
    }
}
