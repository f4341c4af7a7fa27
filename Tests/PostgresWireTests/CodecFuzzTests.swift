/// Seeded fuzzing of every decoder: random bytes and mutated valid messages must only return or throw, and a
/// decoder that returns must leave the buffer consistent (nothing consumed on nil, exactly one message on success).

import Foundation
import NIOCore
import PostgresWire
import XCTest

final class CodecFuzzTests: XCTestCase {
    /// `CODEC_FUZZ_ITERATIONS=N` for a long run (docs/fuzzing.md).
    static let iterations = Int(ProcessInfo.processInfo.environment["CODEC_FUZZ_ITERATIONS"] ?? "") ?? 20_000

    /// Valid messages of every kind, the starting points for mutation.
    static let corpus: [[UInt8]] = {
        let key = BackendKeyData(processID: 77, secretKey: -3)
        let builders: [(inout ByteBuffer) -> Void] = [
            { MessageEncoder.startupMessage(parameters: [("user", "alice"), ("database", "app")], into: &$0) },
            { MessageEncoder.sslRequest(into: &$0) },
            { MessageEncoder.cancelRequest(key, into: &$0) },
            { MessageEncoder.authenticationOK(into: &$0) },
            { MessageEncoder.authenticationMD5(salt: [1, 2, 3, 4], into: &$0) },
            { MessageEncoder.authenticationSASL(mechanisms: ["SCRAM-SHA-256"], into: &$0) },
            { MessageEncoder.authentication(AuthenticationCode.saslContinue, data: Array("r=x,s=eA==,i=1".utf8), into: &$0) },
            { MessageEncoder.parameterStatus("client_encoding", "UTF8", into: &$0) },
            { MessageEncoder.backendKeyData(key, into: &$0) },
            { MessageEncoder.readyForQuery(.inTransaction, into: &$0) },
            { MessageEncoder.errorResponse(severity: .error, state: .queryCanceled, message: "canceled", detail: "d", into: &$0) },
            { MessageEncoder.passwordMessage("pw", into: &$0) },
            { MessageEncoder.saslInitialResponse(mechanism: "SCRAM-SHA-256", data: Array("n,,n=,r=abc".utf8), into: &$0) },
            { MessageEncoder.saslResponse(data: [1, 2, 3], into: &$0) },
            { MessageEncoder.query("SELECT 1", into: &$0) },
            { MessageEncoder.sync(into: &$0) },
        ]
        return builders.map { readableBytes(encoded($0)) }
    }()

    func mutate(_ bytes: [UInt8], using rng: inout SeededGenerator) -> [UInt8] {
        var bytes = bytes
        switch Int.random(in: 0..<6, using: &rng) {
        case 0:  // flip some bytes
            for _ in 0..<Int.random(in: 1...3, using: &rng) where !bytes.isEmpty {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
        case 1:  // truncate
            bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &rng)))
        case 2:  // insert random bytes
            let at = Int.random(in: 0...bytes.count, using: &rng)
            bytes.insert(contentsOf: (0..<Int.random(in: 1...8, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: at)
        case 3:  // rewrite a length field (startup packets at 0, frames at 1) with a small or extreme value
            let offset = Int.random(in: 0...1, using: &rng)
            let choices: [Int32] = [0, 1, 3, 4, 5, 7, 8, 9, 16, Int32(bytes.count), Int32(bytes.count) - 1, .max, .min, -1]
            let length = choices.randomElement(using: &rng)!.bigEndian
            withUnsafeBytes(of: length) { raw in
                for (i, byte) in raw.enumerated() where offset + i < bytes.count { bytes[offset + i] = byte }
            }
        case 4:  // pure noise
            bytes = (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        default:  // two messages glued, then damaged
            bytes += Self.corpus.randomElement(using: &rng)!
            if !bytes.isEmpty { bytes[Int.random(in: 0..<bytes.count, using: &rng)] ^= 0xFF }
        }
        return bytes
    }

    func testStartupPacketDecodeNeverCrashes() {
        var rng = SeededGenerator(seed: 0x5EED_0001)
        var outcomes = (decoded: 0, incomplete: 0, threw: 0)
        for _ in 0..<Self.iterations {
            let bytes = mutate(Self.corpus.randomElement(using: &rng)!, using: &rng)
            var stream = buffer(bytes)
            do {
                if let packet = try StartupPacket.decode(from: &stream) {
                    outcomes.decoded += 1
                    let length = Int(bytes.prefix(4).reduce(0) { $0 << 8 | Int32($1) })
                    XCTAssertEqual(stream.readerIndex, length, "\(packet) from \(bytes)")
                } else {
                    outcomes.incomplete += 1
                    XCTAssertEqual(stream.readerIndex, 0, "consumed bytes of \(bytes)")
                }
            } catch {
                outcomes.threw += 1
            }
        }
        // The mutations reach every branch, not only the first length check.
        XCTAssertGreaterThan(outcomes.decoded, 100)
        XCTAssertGreaterThan(outcomes.incomplete, 100)
        XCTAssertGreaterThan(outcomes.threw, 100)
    }

    func testFrameReadNeverCrashes() {
        var rng = SeededGenerator(seed: 0x5EED_0002)
        var outcomes = (decoded: 0, incomplete: 0, threw: 0)
        for _ in 0..<Self.iterations {
            let bytes = mutate(Self.corpus.randomElement(using: &rng)!, using: &rng)
            let limit = [Int(Int32.max), 64, 16, 4].randomElement(using: &rng)!
            var stream = buffer(bytes)
            do {
                while let frame = try Frame.read(from: &stream, limit: limit) {
                    outcomes.decoded += 1
                    XCTAssertLessThanOrEqual(frame.payload.readableBytes + 4, limit)
                }
                outcomes.incomplete += 1
            } catch {
                outcomes.threw += 1
            }
        }
        XCTAssertGreaterThan(outcomes.decoded, 100)
        XCTAssertGreaterThan(outcomes.incomplete, 100)
        XCTAssertGreaterThan(outcomes.threw, 100)
    }

    /// Frames split at random points, fed chunk by chunk, give the same frames as the whole stream.
    func testRandomSplitsGiveTheSameFrames() throws {
        var rng = SeededGenerator(seed: 0x5EED_0003)
        let frames = Self.corpus.dropFirst(3)  // the first three are startup-phase packets, not frames
        for _ in 0..<500 {
            let stream = (0..<Int.random(in: 1...6, using: &rng)).flatMap { _ in frames.randomElement(using: &rng)! }
            var whole = buffer(stream)
            var expected: [Frame] = []
            while let frame = try Frame.read(from: &whole) { expected.append(frame) }
            XCTAssertEqual(whole.readableBytes, 0)

            var pending = ByteBufferAllocator().buffer(capacity: stream.count)
            var got: [Frame] = []
            var offset = 0
            while offset < stream.count {
                let chunk = Int.random(in: 1...(stream.count - offset), using: &rng)
                pending.writeBytes(stream[offset..<(offset + chunk)])
                offset += chunk
                while let frame = try Frame.read(from: &pending) { got.append(frame) }
            }
            XCTAssertEqual(got, expected)
            XCTAssertEqual(pending.readableBytes, 0)
        }
    }

    func testPayloadDecodersNeverCrash() {
        var rng = SeededGenerator(seed: 0x5EED_0004)
        var decoded = 0
        var threw = 0
        for _ in 0..<Self.iterations {
            var bytes = mutate(Self.corpus.randomElement(using: &rng)!, using: &rng)
            // Strip a plausible frame header half of the time, so the decoders see real payload shapes.
            if Bool.random(using: &rng), bytes.count >= 5 { bytes.removeFirst(5) }
            let payload = buffer(bytes)
            func count<T>(_ body: () throws(WireError) -> T) {
                do { _ = try body(); decoded += 1 } catch { threw += 1 }
            }
            count { () throws(WireError) in try AuthenticationRequest.decode(payload) }
            count { () throws(WireError) in try ParameterStatus.decode(payload) }
            count { () throws(WireError) in try BackendKeyData.decode(payload) }
            count { () throws(WireError) in try ErrorFields.decode(payload) }
            count { () throws(WireError) in try PasswordPayload.password(payload) }
            count { () throws(WireError) in try PasswordPayload.saslInitial(payload) }
            _ = PasswordPayload.saslResponse(payload)
            _ = FrameHeader.peek(payload, at: payload.readerIndex + Int.random(in: 0...8, using: &rng))
            XCTAssertEqual(readableBytes(payload), bytes, "a decoder changed its input")
        }
        XCTAssertGreaterThan(decoded, 1_000)
        XCTAssertGreaterThan(threw, 1_000)
    }

    func testPureNoiseOfEveryShortLength() {
        var rng = SeededGenerator(seed: 0x5EED_0005)
        for length in 0..<32 {
            for _ in 0..<200 {
                let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
                var startup = buffer(bytes)
                _ = try? StartupPacket.decode(from: &startup)
                var frames = buffer(bytes)
                while let _ = try? Frame.read(from: &frames, limit: 1 << 16) {}
            }
        }
    }
}
