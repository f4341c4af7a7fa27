/// The four SCRAM-SHA-256 messages (RFC 5802 §7): strict parsing and building, no cryptography.

struct SCRAMAttribute {
    var name: UInt8
    var value: ArraySlice<UInt8>
}

enum SCRAMAttributes {
    /// Splits `a=v,b=w,...` into attributes: each one ASCII letter, `=`, and a value without commas
    /// (commas cannot occur in values: names encode them as `=2C`, and base64 and nonces have none).
    static func parse(_ bytes: ArraySlice<UInt8>, in message: String) -> Result<[SCRAMAttribute], SCRAMError> {
        var attributes: [SCRAMAttribute] = []
        attributes.reserveCapacity(4)
        // One pass (every login parses two messages): items end at a comma or at the end.
        var start = bytes.startIndex
        var index = start
        while true {
            let atEnd = index == bytes.endIndex
            if !atEnd {
                let byte = bytes[index]
                if byte == 0 { return .failure(.malformedMessage("\(message) contains a NUL byte")) }
                if byte != UInt8(ascii: ",") {
                    index += 1
                    continue
                }
            }
            guard index - start >= 2, isLetter(bytes[start]), bytes[start + 1] == UInt8(ascii: "=") else {
                return .failure(.malformedMessage("\(message) has an item that is not attribute=value"))
            }
            attributes.append(SCRAMAttribute(name: bytes[start], value: bytes[(start + 2)..<index]))
            if atEnd { return .success(attributes) }
            index += 1
            start = index
        }
    }

    /// `printable = %x21-2B / %x2D-7E`: visible ASCII except the comma.
    static func isValidNonce<Bytes: Collection>(_ bytes: Bytes) -> Bool where Bytes.Element == UInt8 {
        !bytes.isEmpty && bytes.allSatisfy { $0 >= 0x21 && $0 <= 0x7E && $0 != UInt8(ascii: ",") }
    }

    /// A decimal iteration count in 1...Int32.max (PostgreSQL keeps it in an `int`).
    static func parseIterationCount(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 10 else { return nil }
        var value = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        guard value >= 1, value <= Int(Int32.max) else { return nil }
        return value
    }

    /// `saslname`: `,` and `=` escaped as `=2C` and `=3D`.
    static func encodeName(_ name: String) -> [UInt8] {
        var output: [UInt8] = []
        for byte in name.utf8 {
            switch byte {
            case UInt8(ascii: ","): output += Array("=2C".utf8)
            case UInt8(ascii: "="): output += Array("=3D".utf8)
            default: output.append(byte)
            }
        }
        return output
    }

    private static func isLetter(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
    }
}

/// `gs2-header client-first-message-bare`, e.g. `n,,n=,r=rOprNGfwEbeRWgbNEkqO`.
struct SCRAMClientFirst: Equatable {
    /// `n,,`, `y,,` or `p=tls-server-end-point,,`: what the client-final-message's `c=` must repeat (with the
    /// binding data after it for `p`).
    var gs2Header: [UInt8]
    /// Part of the AuthMessage.
    var bare: [UInt8]
    var nonce: [UInt8]
    /// The GS2 channel-binding flag: `n` (the client does not bind), `y` (it could, but thinks the server cannot)
    /// or `p` (it binds, with the type in `channelBindingType`).
    var channelBindingFlag: UInt8 = UInt8(ascii: "n")
    var channelBindingType: String?

    static func build(username: String, nonce: String) -> SCRAMClientFirst {
        let bare = Array("n=".utf8) + SCRAMAttributes.encodeName(username) + Array(",r=".utf8) + Array(nonce.utf8)
        return SCRAMClientFirst(gs2Header: Array("n,,".utf8), bare: bare, nonce: Array(nonce.utf8))
    }

    var bytes: [UInt8] { gs2Header + bare }

    /// The user name (`n=`) is read and ignored: PostgreSQL takes it from the startup packet.
    static func parse(_ message: [UInt8]) -> Result<SCRAMClientFirst, SCRAMError> {
        let name = "client-first-message"
        guard let flag = message.first else { return .failure(.malformedMessage("\(name) is empty")) }
        var index = 1
        var bindingType: String?
        switch flag {
        case UInt8(ascii: "n"), UInt8(ascii: "y"):
            break
        case UInt8(ascii: "p"):
            // p=<cb-name>: letters, digits, '.' and '-' (RFC 5802 §7).
            guard message.count > 2, message[1] == UInt8(ascii: "=") else {
                return .failure(.malformedMessage("\(name) has an invalid channel binding type"))
            }
            index = 2
            while index < message.count, message[index] != UInt8(ascii: ",") {
                let byte = message[index]
                let lower = byte | 0x20
                guard (lower >= UInt8(ascii: "a") && lower <= UInt8(ascii: "z"))
                        || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                        || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-") else {
                    return .failure(.malformedMessage("\(name) has an invalid channel binding type"))
                }
                index += 1
            }
            guard index > 2 else { return .failure(.malformedMessage("\(name) has an invalid channel binding type")) }
            bindingType = String(decoding: message[2..<index], as: UTF8.self)
        default:
            return .failure(.malformedMessage("\(name) has an invalid channel binding flag"))
        }
        guard message.count >= index + 2, message[index] == UInt8(ascii: ",") else {
            return .failure(.malformedMessage("\(name) has an invalid GS2 header"))
        }
        if message[index + 1] == UInt8(ascii: "a") { return .failure(.unsupportedAuthorizationIdentity) }
        guard message[index + 1] == UInt8(ascii: ",") else {
            return .failure(.malformedMessage("\(name) has an invalid GS2 header"))
        }
        let headerEnd = index + 2
        let bare = message[headerEnd...]
        let attributes: [SCRAMAttribute]
        switch SCRAMAttributes.parse(bare, in: name) {
        case .success(let parsed): attributes = parsed
        case .failure(let error): return .failure(error)
        }
        if attributes.first?.name == UInt8(ascii: "m") { return .failure(.unsupportedExtension) }
        guard attributes.count >= 2, attributes[0].name == UInt8(ascii: "n") else {
            return .failure(.malformedMessage("\(name) lacks the user name attribute"))
        }
        guard attributes[1].name == UInt8(ascii: "r") else {
            return .failure(.malformedMessage("\(name) lacks the nonce attribute"))
        }
        guard SCRAMAttributes.isValidNonce(attributes[1].value) else {
            return .failure(.malformedMessage("\(name) has an invalid nonce"))
        }
        // Any further attributes are extensions, which PostgreSQL ignores too.
        return .success(SCRAMClientFirst(gs2Header: Array(message[..<headerEnd]), bare: Array(bare),
                                         nonce: Array(attributes[1].value), channelBindingFlag: flag,
                                         channelBindingType: bindingType))
    }
}

/// `r=<client nonce><server nonce>,s=<base64 salt>,i=<iterations>`.
struct SCRAMServerFirst: Equatable {
    var nonce: [UInt8]
    var salt: [UInt8]
    var iterations: Int

    var bytes: [UInt8] {
        Array("r=".utf8) + nonce + Array(",s=".utf8) + Base64.encodeToBytes(salt) + Array(",i=\(iterations)".utf8)
    }

    /// Checks that the nonce extends `clientNonce` by at least one character.
    static func parse(_ message: [UInt8], clientNonce: [UInt8]) -> Result<SCRAMServerFirst, SCRAMError> {
        let name = "server-first-message"
        let attributes: [SCRAMAttribute]
        switch SCRAMAttributes.parse(message[...], in: name) {
        case .success(let parsed): attributes = parsed
        case .failure(let error): return .failure(error)
        }
        if attributes.first?.name == UInt8(ascii: "m") { return .failure(.unsupportedExtension) }
        guard attributes.count >= 3, attributes[0].name == UInt8(ascii: "r"),
              attributes[1].name == UInt8(ascii: "s"), attributes[2].name == UInt8(ascii: "i") else {
            return .failure(.malformedMessage("\(name) lacks r=, s= or i="))
        }
        let nonce = attributes[0].value
        guard SCRAMAttributes.isValidNonce(nonce) else { return .failure(.malformedMessage("\(name) has an invalid nonce")) }
        guard nonce.count > clientNonce.count, nonce.starts(with: clientNonce) else { return .failure(.nonceMismatch) }
        guard let salt = Base64.decode(attributes[1].value), !salt.isEmpty else {
            return .failure(.malformedMessage("\(name) has an invalid salt"))
        }
        guard let iterations = SCRAMAttributes.parseIterationCount(attributes[2].value) else {
            return .failure(.malformedMessage("\(name) has an invalid iteration count"))
        }
        return .success(SCRAMServerFirst(nonce: Array(nonce), salt: salt, iterations: iterations))
    }
}

/// `c=<base64 GS2 header>,r=<nonce>,p=<base64 ClientProof>`.
struct SCRAMClientFinal: Equatable {
    /// `c=` decoded: the GS2 header again, followed by the channel-binding data when the client binds.
    var channelBinding: [UInt8]
    var nonce: [UInt8]
    var proof: [UInt8]
    /// client-final-message-without-proof: part of the AuthMessage.
    var withoutProof: [UInt8]

    static func withoutProof(channelBindingInput: [UInt8], nonce: [UInt8]) -> [UInt8] {
        Array("c=".utf8) + Base64.encodeToBytes(channelBindingInput) + Array(",r=".utf8) + nonce
    }

    var bytes: [UInt8] { withoutProof + Array(",p=".utf8) + Base64.encodeToBytes(proof) }

    static func parse(_ message: [UInt8]) -> Result<SCRAMClientFinal, SCRAMError> {
        let name = "client-final-message"
        let attributes: [SCRAMAttribute]
        switch SCRAMAttributes.parse(message[...], in: name) {
        case .success(let parsed): attributes = parsed
        case .failure(let error): return .failure(error)
        }
        guard attributes.count >= 3, attributes[0].name == UInt8(ascii: "c"), attributes[1].name == UInt8(ascii: "r"),
              let last = attributes.last, last.name == UInt8(ascii: "p") else {
            return .failure(.malformedMessage("\(name) must be c=..., r=..., [extensions,] p=..."))
        }
        guard let channelBinding = Base64.decode(attributes[0].value) else {
            return .failure(.malformedMessage("\(name) has invalid channel binding data"))
        }
        guard SCRAMAttributes.isValidNonce(attributes[1].value) else {
            return .failure(.malformedMessage("\(name) has an invalid nonce"))
        }
        guard let proof = Base64.decode(last.value), proof.count == SCRAMCrypto.keyLength else {
            return .failure(.malformedMessage("\(name) has an invalid proof"))
        }
        // The proof is the last item; everything before its comma is signed.
        let withoutProof = Array(message[..<(last.value.startIndex - 3)])
        return .success(SCRAMClientFinal(channelBinding: channelBinding, nonce: Array(attributes[1].value),
                                         proof: proof, withoutProof: withoutProof))
    }
}

/// `v=<base64 ServerSignature>` or `e=<error>`.
enum SCRAMServerFinal: Equatable {
    case signature([UInt8])
    case error(String)

    var bytes: [UInt8] {
        switch self {
        case .signature(let signature): Array("v=".utf8) + Base64.encodeToBytes(signature)
        case .error(let value): Array("e=\(value)".utf8)
        }
    }

    static func parse(_ message: [UInt8]) -> Result<SCRAMServerFinal, SCRAMError> {
        let name = "server-final-message"
        let attributes: [SCRAMAttribute]
        switch SCRAMAttributes.parse(message[...], in: name) {
        case .success(let parsed): attributes = parsed
        case .failure(let error): return .failure(error)
        }
        // Extensions after the first attribute are ignored.
        switch attributes.first?.name {
        case UInt8(ascii: "e"):
            return .success(.error(String(decoding: attributes[0].value, as: UTF8.self)))
        case UInt8(ascii: "v"):
            guard let signature = Base64.decode(attributes[0].value), signature.count == SCRAMCrypto.keyLength else {
                return .failure(.malformedMessage("\(name) has an invalid server signature"))
            }
            return .success(.signature(signature))
        default:
            return .failure(.malformedMessage("\(name) must start with v= or e="))
        }
    }
}
