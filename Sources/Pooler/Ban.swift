/// A server address taken out of rotation for a while (admin BAN, later health checks). The primary is never
/// banned; when every candidate is banned the pool uses them anyway rather than refusing all clients.
import Config
import Foundation
import NIOCore

struct Ban: Sendable {
    var reason: String
    var since: Date
    var seconds: Int
}

extension ConnectionPool {
    /// One ban as SHOW BANS lists it.
    struct BanInfo {
        var slot: ServerSlot
        var ban: Ban
        var remainingSeconds: Int
    }

    /// When a ban of `seconds` from `now` ends (kept to a year, as the config and BAN allow: no overflow).
    private static func banEnd(seconds: Int, from now: UInt64) -> UInt64 {
        now + UInt64(min(max(seconds, 1), ConfigLimits.maxSeconds)) * 1_000_000_000
    }

    /// Bans every replica whose host is `host`; returns the addresses newly banned.
    func ban(host: String, seconds: Int, reason: String) -> [ServerAddress] {
        let now = NIODeadline.now().uptimeNanoseconds
        let until = Self.banEnd(seconds: seconds, from: now)
        return lock.withLock {
            var banned: [ServerAddress] = []
            for slot in slots where slot.address.host == host && !slot.isPrimary {
                if slot.bannedUntil.load(ordering: .relaxed) <= now { banned.append(slot.address) }
                slot.bannedUntil.store(until, ordering: .relaxed)
                slot.ban = Ban(reason: reason, since: Date(), seconds: seconds)
            }
            return banned
        }
    }

    /// Lifts bans on `host`; returns the addresses unbanned.
    func unban(host: String) -> [ServerAddress] {
        let now = NIODeadline.now().uptimeNanoseconds
        return lock.withLock {
            var unbanned: [ServerAddress] = []
            for slot in slots where slot.address.host == host && slot.bannedUntil.load(ordering: .relaxed) > now {
                slot.bannedUntil.store(0, ordering: .relaxed)
                slot.ban = nil
                unbanned.append(slot.address)
            }
            return unbanned
        }
    }

    /// Bans in force (expired ones are hidden, as in PgCat).
    func bans() -> [BanInfo] {
        let now = NIODeadline.now().uptimeNanoseconds
        return lock.withLock {
            slots.compactMap { slot -> BanInfo? in
                let until = slot.bannedUntil.load(ordering: .relaxed)
                guard until > now, let ban = slot.ban else { return nil }
                return BanInfo(slot: slot, ban: ban, remainingSeconds: Int((until - now + 999_999_999) / 1_000_000_000))
            }
        }
    }

    /// Bans a replica for `ban_time` (a primary is never banned).
    func ban(slot: ServerSlot, reason: String, seconds: Int? = nil) {
        guard !slot.isPrimary else { return }
        let seconds = seconds ?? banTime.load
        let until = Self.banEnd(seconds: seconds, from: NIODeadline.now().uptimeNanoseconds)
        let isNew = lock.withLock {
            let wasBanned = slot.bannedUntil.load(ordering: .relaxed) > NIODeadline.now().uptimeNanoseconds
            if until > slot.bannedUntil.load(ordering: .relaxed) {
                slot.bannedUntil.store(until, ordering: .relaxed)
                slot.ban = Ban(reason: reason, since: wasBanned ? (slot.ban?.since ?? Date()) : Date(), seconds: seconds)
            }
            return !wasBanned
        }
        if isNew { logger.warning("server banned", metadata: ["server": "\(slot.address)", "reason": "\(reason)", "seconds": "\(seconds)"]) }
    }

    func isBanned(slotIndex: Int) -> Bool {
        slotIndex < slots.count && slots[slotIndex].bannedUntil.load(ordering: .relaxed) > NIODeadline.now().uptimeNanoseconds
    }
}
