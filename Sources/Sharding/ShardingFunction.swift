/// PgCat's sharding functions, bit-exact (reference/pgcat.md §1.4): `pg_bigint_hash` is what PostgreSQL's
/// `PARTITION BY HASH` on one bigint column computes (hashint8extended with the partition seed, combined with
/// hash_combine64), so a table partitioned by hash in Postgres and a pool sharded by pgcat agree on every key;
/// `sha1` takes the last 32 bits of the SHA-1 of the key's decimal text. Pure.
import Crypto

public enum Sharder {
    case pgBigintHash
    case sha1

    /// The shard of `key` among `shards` (at least 1).
    public func shard(of key: Int64, shards: Int) -> Int {
        precondition(shards > 0, "a pool has at least one shard")
        switch self {
        case .pgBigintHash:
            return Int(PartitionHash.hashCombine64(0, PartitionHash.hashint8extended(key)) % UInt64(shards))
        case .sha1:
            let digest = Insecure.SHA1.hash(data: Array(String(key).utf8))
            let bytes = Array(digest)
            // The last 8 hex digits are the last 4 bytes.
            let tail = bytes.suffix(4).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            return Int(tail % UInt64(shards))
        }
    }
}

/// PostgreSQL's `hash_uint32_extended` (src/common/hashfn.c) and partition hashing (partbounds.c).
enum PartitionHash {
    static let seed: UInt64 = 0x7A5B_2236_7996_DCFD  // HASH_PARTITION_SEED, src/include/catalog/partition.h

    @inline(__always) private static func rot(_ x: UInt32, _ k: UInt32) -> UInt32 { (x << k) | (x >> (32 - k)) }

    private static func mix(_ a: inout UInt32, _ b: inout UInt32, _ c: inout UInt32) {
        a &-= c; a ^= rot(c, 4); c &+= b
        b &-= a; b ^= rot(a, 6); a &+= c
        c &-= b; c ^= rot(b, 8); b &+= a
        a &-= c; a ^= rot(c, 16); c &+= b
        b &-= a; b ^= rot(a, 19); a &+= c
        c &-= b; c ^= rot(b, 4); b &+= a
    }

    private static func final(_ a: inout UInt32, _ b: inout UInt32, _ c: inout UInt32) {
        c ^= b; c &-= rot(b, 14)
        a ^= c; a &-= rot(c, 11)
        b ^= a; b &-= rot(a, 25)
        c ^= b; c &-= rot(b, 16)
        a ^= c; a &-= rot(c, 4)
        b ^= a; b &-= rot(a, 14)
        c ^= b; c &-= rot(b, 24)
    }

    static func hashUInt32Extended(_ k: UInt32, seed: UInt64) -> UInt64 {
        var a: UInt32 = 0x9E37_79B9 &+ 4 &+ 3_923_095
        var b = a
        var c = a
        if seed != 0 {
            a &+= UInt32(truncatingIfNeeded: seed >> 32)
            b &+= UInt32(truncatingIfNeeded: seed)
            mix(&a, &b, &c)
        }
        a &+= k
        final(&a, &b, &c)
        return UInt64(b) << 32 | UInt64(c)
    }

    static func hashint8extended(_ key: Int64) -> UInt64 {
        let bits = UInt64(bitPattern: key)
        var lo = UInt32(truncatingIfNeeded: bits)
        let hi = UInt32(truncatingIfNeeded: bits >> 32)
        lo ^= key >= 0 ? hi : ~hi
        return hashUInt32Extended(lo, seed: seed)
    }

    static func hashCombine64(_ a: UInt64, _ b: UInt64) -> UInt64 {
        a ^ (b &+ 0x49A0_F4DD_15E5_A8E3 &+ (a << 54) &+ (a >> 7))
    }
}
