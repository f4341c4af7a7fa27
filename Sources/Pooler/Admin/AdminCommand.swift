/// The admin console's commands (databases `pgcat` and `pgbouncer`), parsed as PgCat and PgBouncer do: trailing
/// semicolons trimmed, split on whitespace, keywords case-insensitive.
enum AdminCommand: Equatable {
    enum Show: String, CaseIterable {
        case help, config, databases, pools, clients, servers, users, version, lists, stats, bans
        case mlModels = "ml_models", mlQueues = "ml_queues"
    }

    case show(Show)
    case ban(host: String, seconds: Int)
    case unban(host: String)
    /// PAUSE / RESUME with an optional `db,user` (PgCat) or `db` (PgBouncer).
    case pause(PoolSelector?)
    case resume(PoolSelector?)
    case reconnect(database: String?)
    case kill(database: String)
    case reload
    case shutdown
    case set

    struct PoolSelector: Equatable {
        var database: String
        var user: String?
    }

    /// A command the console does not know, or one used wrongly, with the message to send (SQLSTATE 42601 or 0A000).
    struct ParseError: Error, Equatable {
        var message: String
        var unsupported: Bool
    }

    static func parse(_ text: String) -> Result<AdminCommand, ParseError> {
        var trimmed = Substring(text)
        while let last = trimmed.last, last == ";" || last.isWhitespace || last == "\0" { trimmed.removeLast() }
        let words = trimmed.split(whereSeparator: { $0.isWhitespace }).map(String.init)
        guard let keyword = words.first?.uppercased() else {
            return .failure(ParseError(message: "empty query against the admin database", unsupported: false))
        }
        let rest = Array(words.dropFirst())
        switch keyword {
        case "SHOW":
            guard rest.count == 1, let what = Show(rawValue: rest[0].lowercased()) else {
                return .failure(ParseError(message: "Unsupported SHOW query against the admin database", unsupported: true))
            }
            return .success(.show(what))
        case "BAN":
            guard rest.count == 2 else { return .failure(ParseError(message: "usage: BAN hostname duration_seconds", unsupported: false)) }
            guard let seconds = Int(rest[1]) else {
                return .failure(ParseError(message: "duration_seconds must be an integer", unsupported: false))
            }
            guard seconds > 0 else { return .failure(ParseError(message: "duration_seconds must be >= 0", unsupported: false)) }
            guard seconds <= ConfigLimits.maxSeconds else {
                return .failure(ParseError(message: "duration_seconds must be at most \(ConfigLimits.maxSeconds) (a year)",
                                           unsupported: false))
            }
            return .success(.ban(host: rest[0], seconds: seconds))
        case "UNBAN":
            guard rest.count == 1 else {
                return .failure(ParseError(message: "UNBAN command requires a hostname to unban", unsupported: false))
            }
            return .success(.unban(host: rest[0]))
        case "PAUSE", "RESUME":
            let selector: PoolSelector?
            switch selectorOf(rest) {
            case .success(let parsed): selector = parsed
            case .failure: return .failure(ParseError(message: "usage: \(keyword) [db, user]", unsupported: false))
            }
            return .success(keyword == "PAUSE" ? .pause(selector) : .resume(selector))
        case "RECONNECT":
            guard rest.count <= 1 else { return .failure(ParseError(message: "usage: RECONNECT [db]", unsupported: false)) }
            return .success(.reconnect(database: rest.first))
        case "KILL":
            guard rest.count == 1 else { return .failure(ParseError(message: "usage: KILL db", unsupported: false)) }
            return .success(.kill(database: rest[0]))
        case "RELOAD":
            return .success(.reload)
        case "SHUTDOWN":
            return .success(.shutdown)
        case "SET":
            return .success(.set)
        default:
            return .failure(ParseError(message: "Unsupported query against the admin database", unsupported: true))
        }
    }

    /// `db,user`, `db, user` or `db` (PgBouncer); nothing means every pool.
    private static func selectorOf(_ words: [String]) -> Result<PoolSelector?, ParseError> {
        let joined = words.joined(separator: " ")
        guard !joined.isEmpty else { return .success(nil) }
        let parts = joined.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        switch parts.count {
        case 1 where !parts[0].contains(" "):
            return .success(PoolSelector(database: parts[0], user: nil))
        case 2 where !parts[0].isEmpty && !parts[1].isEmpty:
            return .success(PoolSelector(database: parts[0], user: parts[1]))
        default:
            return .failure(ParseError(message: "", unsupported: false))
        }
    }
}

import Config
import Foundation
