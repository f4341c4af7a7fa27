/// Helpers shared by the Auth tests: byte/string conversion, Result accessors, a seeded generator.

import XCTest
@testable import Auth

func bytes(_ string: String) -> [UInt8] { Array(string.utf8) }

func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

extension Result {
    var value: Success? {
        if case .success(let value) = self { return value }
        return nil
    }

    var error: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

/// SplitMix64: deterministic, so a fuzz failure reproduces.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func XCTAssertMalformed<T>(_ result: Result<T, SCRAMError>, file: StaticString = #filePath, line: UInt = #line) {
    guard case .failure(.malformedMessage) = result else {
        return XCTFail("expected malformedMessage, got \(result)", file: file, line: line)
    }
}
