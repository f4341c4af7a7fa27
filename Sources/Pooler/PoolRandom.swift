import Atomics

/// The load balancer's random numbers: SplitMix64 over a shared atomic counter, seeded once from the system.
/// `SystemRandomNumberGenerator` makes a getrandom(2) call per draw, once per transaction; this needs none, and any
/// event loop may draw at once. Not for secrets (BackendKeyData and nonces use the system generator).
struct PoolRandom: RandomNumberGenerator {
    let state: ManagedAtomic<UInt64>

    static func makeState() -> ManagedAtomic<UInt64> {
        ManagedAtomic(UInt64.random(in: .min ... .max))
    }

    mutating func next() -> UInt64 {
        var z = state.wrappingIncrementThenLoad(by: 0x9E37_79B9_7F4A_7C15, ordering: .relaxed)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
