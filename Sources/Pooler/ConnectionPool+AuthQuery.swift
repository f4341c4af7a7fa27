/// `auth_query`: the password of a user configured without one is looked up on the pool's first server (shard 0's
/// primary) as `auth_query_user`, cached briefly, and shared by the clients logging in meanwhile.
import Auth
import Config
import NIOConcurrencyHelpers
import NIOCore

extension ConnectionPool {
    /// How long a found secret is reused without asking again; a failed login with it asks again at once.
    static let authQueryCacheTime = TimeAmount.seconds(30)

    /// The stored secret for this pool's user, or why there is none.
    func lookUpPassword(on loop: EventLoop) -> EventLoopFuture<AuthQuery.Outcome> {
        guard let authQuery else { return loop.makeSucceededFuture(.refused(reason: "auth_query is not configured")) }
        let now = NIODeadline.now()
        let (cached, inFlight): (String?, EventLoopFuture<AuthQuery.Outcome>?) = lock.withLock {
            if let found = authQuerySecret, now - found.fetchedAt < Self.authQueryCacheTime {
                return (found.secret, nil)
            }
            return (nil, authQueryLookup)
        }
        if let cached { return loop.makeSucceededFuture(.secret(cached)) }
        if let inFlight { return inFlight.hop(to: loop) }
        let lookup = runAuthQuery(authQuery, on: loop)
        lock.withLock { authQueryLookup = lookup }
        lookup.whenComplete { result in
            self.lock.withLock {
                self.authQueryLookup = nil
                if case .success(.secret(let secret)) = result { self.authQuerySecret = (secret, NIODeadline.now()) }
            }
        }
        return lookup
    }

    /// A login with the cached secret failed: the password may have changed, so the next login asks again.
    func forgetAuthQuerySecret() {
        lock.withLock { authQuerySecret?.fetchedAt = .distantPast }
    }

    private func runAuthQuery(_ settings: AuthQuerySettings, on loop: EventLoop) -> EventLoopFuture<AuthQuery.Outcome> {
        let shard = slotsByShard.first ?? []
        guard let slot = shard.first(where: { $0.address.role == "primary" }) ?? shard.first else {
            return loop.makeFailedFuture(AuthQueryError(reason: "the pool has no server to run auth_query on"))
        }
        var credentials = ServerCredentials(user: settings.user, database: slot.address.database,
                                            password: settings.password, applicationName: "pgcat_auth_query")
        credentials.extraParameters = AuthQuery.connectionParameters
        let timeout = TimeAmount.milliseconds(Int64(max(self.settings.connectTimeout, 1)))
        let statements = AuthQuery.statements(query: settings.query, user: user)
        let user = self.user
        return openOneOff(slot.address, credentials: credentials, timeout: timeout, on: loop).flatMap { server in
            ServerProbe.run(statements, on: server, timeout: timeout).always { _ in server.close() }
        }.flatMapError { error in
            loop.makeFailedFuture(AuthQueryError(reason: "\(error)"))
        }.map { results in
            AuthQuery.interpret(user: user, lookup: results.first ?? [], validity: results.count > 1 ? results[1] : [])
        }
    }

    /// A connection outside the pool's accounting (health probes, auth_query), closed by the caller.
    func openOneOff(_ address: ServerAddress, credentials: ServerCredentials, timeout: TimeAmount,
                    on loop: EventLoop) -> EventLoopFuture<ServerConnection> {
        let server = ServerConnection(id: 0, address: address, slotIndex: Int.max, credentials: credentials,
                                      eventLoop: loop, keyCache: keyCache, connector: connector,
                                      statementCacheSize: 0, logger: logger)
        let connected = connector.connect(host: address.host, port: address.port, on: loop,
                                          timeout: timeout, handler: server)
        connected.whenFailure { error in server.connectFailed(error) }
        let deadline = loop.scheduleTask(in: timeout) { server.close() }
        return connected.flatMap { server.startupFuture }.map { server }.always { _ in deadline.cancel() }
    }
}

struct AuthQueryError: Error, CustomStringConvertible {
    var reason: String
    var description: String { "auth_query failed: \(reason)" }
}
