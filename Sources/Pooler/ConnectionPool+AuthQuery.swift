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
        // One decision under the lock: a fresh secret, a lookup already running, or this caller starts one (two
        // logins deciding apart could both start a lookup).
        enum Source {
            case cached(String)
            case running(EventLoopFuture<AuthQuery.Outcome>)
            case started(EventLoopPromise<AuthQuery.Outcome>)
        }
        let source: Source = lock.withLock {
            if let found = authQuerySecret, now - found.fetchedAt < Self.authQueryCacheTime {
                return .cached(found.secret)
            }
            if let running = authQueryLookup { return .running(running) }
            let promise = loop.makePromise(of: AuthQuery.Outcome.self)
            authQueryLookup = promise.futureResult
            return .started(promise)
        }
        switch source {
        case .cached(let secret):
            return loop.makeSucceededFuture(.secret(secret))
        case .running(let lookup):
            return lookup.hop(to: loop)
        case .started(let promise):
            runAuthQuery(authQuery, on: loop).whenComplete { result in
                self.lock.withLock {
                    self.authQueryLookup = nil
                    if case .success(.secret(let secret)) = result { self.authQuerySecret = (secret, NIODeadline.now()) }
                }
                promise.completeWith(result)
            }
            return promise.futureResult
        }
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
}

struct AuthQueryError: Error, CustomStringConvertible {
    var reason: String
    var description: String { "auth_query failed: \(reason)" }
}
