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
        var address: ServerAddress
        var slot: ServerSlot
        /// As detected for `role: auto` (`ServerSlot.currentRole`).
        var role: String
        var ban: Ban
        var remainingSeconds: Int
    }

    /// Bans every replica whose host is `host`; returns the addresses newly banned.
    func ban(host: String, seconds: Int, reason: String) -> [ServerAddress] {
        let now = NIODeadline.now().uptimeNanoseconds
        let until = now + UInt64(min(max(seconds, 0), ConfigLimits.maxSeconds)) * 1_000_000_000
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
                return BanInfo(address: slot.address, slot: slot, role: slot.currentRole, ban: ban, remainingSeconds: Int((until - now + 999_999_999) / 1_000_000_000))
            }
        }
    }

    /// Bans a replica for `ban_time` (a primary is never banned).
    func ban(slot: ServerSlot, reason: String, seconds: Int? = nil) {
        guard !slot.isPrimary else { return }
        let seconds = seconds ?? banTime.load
        let until = NIODeadline.now().uptimeNanoseconds + UInt64(min(max(seconds, 1), ConfigLimits.maxSeconds)) * 1_000_000_000
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
