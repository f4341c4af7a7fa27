/// Strict standard base64 (RFC 4648 §4, padded), written here so `Auth` needs no Foundation.

enum Base64 {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// 0xFF marks a byte outside the alphabet.
    private static let decodeTable: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    static func encode<Bytes: Collection>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        String(decoding: encodeToBytes(bytes), as: UTF8.self)
    }

    static func encodeToBytes<Bytes: Collection>(_ bytes: Bytes) -> [UInt8] where Bytes.Element == UInt8 {
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var iterator = bytes.makeIterator()
        while let b0 = iterator.next() {
            let b1 = iterator.next()
            let b2 = iterator.next()
            output.append(alphabet[Int(b0 >> 2)])
            output.append(alphabet[Int((b0 & 0x03) << 4 | (b1 ?? 0) >> 4)])
            if let b1 {
                output.append(alphabet[Int((b1 & 0x0F) << 2 | (b2 ?? 0) >> 6)])
            } else {
                output.append(UInt8(ascii: "="))
            }
            if let b2 {
                output.append(alphabet[Int(b2 & 0x3F)])
            } else {
                output.append(UInt8(ascii: "="))
            }
        }
        return output
    }

    static func decode(_ string: String) -> [UInt8]? {
        decode(Array(string.utf8))
    }

    /// Returns nil unless the input is canonical padded base64: length a multiple of 4, no whitespace,
    /// padding only at the end, and unused trailing bits zero (as PostgreSQL's `pg_b64_decode` requires
    /// the first three; the last keeps decode(encode(x)) the only spelling of x).
    static func decode<Bytes: Collection>(_ input: Bytes) -> [UInt8]? where Bytes.Element == UInt8 {
        let count = input.count
        guard count % 4 == 0 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(count / 4 * 3)
        var quad: (UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0)
        var index = 0
        var padding = 0
        for byte in input {
            let value: UInt8
            if byte == UInt8(ascii: "=") {
                // Padding may only fill the last one or two positions of the final quantum.
                guard index >= count - 2, index % 4 >= 2 else { return nil }
                padding += 1
                value = 0
            } else {
                guard padding == 0 else { return nil }
                value = decodeTable[Int(byte)]
                guard value != 0xFF else { return nil }
            }
            switch index % 4 {
            case 0: quad.0 = value
            case 1: quad.1 = value
            case 2: quad.2 = value
            default:
                quad.3 = value
                output.append(quad.0 << 2 | quad.1 >> 4)
                switch padding {
                case 0:
                    output.append(quad.1 << 4 | quad.2 >> 2)
                    output.append(quad.2 << 6 | quad.3)
                case 1:
                    guard quad.2 & 0x03 == 0 else { return nil }
                    output.append(quad.1 << 4 | quad.2 >> 2)
                default:
                    guard quad.1 & 0x0F == 0 else { return nil }
                }
            }
            index += 1
        }
        return output
    }
}
