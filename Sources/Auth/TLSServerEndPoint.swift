/// The `tls-server-end-point` channel binding (RFC 5929 §4) that SCRAM-SHA-256-PLUS signs: a hash of the server's
/// certificate, with the hash function of the certificate's signature algorithm (MD5 and SHA-1 are replaced by
/// SHA-256). PostgreSQL computes it the same way (`be_tls_get_certificate_hash`), and like it a certificate whose
/// signature names no such hash (Ed25519, RSA-PSS) has no binding: -PLUS is then not offered.
import Crypto

public enum TLSServerEndPoint {
    /// The binding data for a DER-encoded X.509 certificate, or nil when its signature algorithm is not one of
    /// the RSA or ECDSA algorithms with MD5, SHA-1, SHA-256, SHA-384 or SHA-512 (SHA-224, which PostgreSQL would
    /// hash with, is not in swift-crypto: such a certificate gets no -PLUS either).
    public static func bindingData(certificateDER der: [UInt8]) -> [UInt8]? {
        guard let hash = hashFunction(certificateDER: der) else { return nil }
        switch hash {
        case .sha256: return Array(SHA256.hash(data: der))
        case .sha384: return Array(SHA384.hash(data: der))
        case .sha512: return Array(SHA512.hash(data: der))
        }
    }

    enum HashFunction: Equatable { case sha256, sha384, sha512 }

    /// The hash for the certificate's outer `signatureAlgorithm`.
    static func hashFunction(certificateDER der: [UInt8]) -> HashFunction? {
        // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE { OID, ... }, ... }
        var reader = DERReader(der[...])
        guard var certificate = reader.read(tag: 0x30), certificate.read(tag: 0x30) != nil,
              var algorithm = certificate.read(tag: 0x30), let oid = algorithm.read(tag: 0x06) else { return nil }
        return signatureHashes[Array(oid.bytes)]
    }

    /// Signature algorithm OIDs (DER content bytes) and the binding's hash for each.
    private static let signatureHashes: [[UInt8]: HashFunction] = {
        let rsa: [UInt8] = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01]  // 1.2.840.113549.1.1
        let ecdsa: [UInt8] = [0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04]  // 1.2.840.10045.4
        return [
            rsa + [0x04]: .sha256,  // md5WithRSAEncryption
            rsa + [0x05]: .sha256,  // sha1WithRSAEncryption
            rsa + [0x0B]: .sha256,  // sha256WithRSAEncryption
            rsa + [0x0C]: .sha384,  // sha384WithRSAEncryption
            rsa + [0x0D]: .sha512,  // sha512WithRSAEncryption
            ecdsa + [0x01]: .sha256,  // ecdsa-with-SHA1
            ecdsa + [0x03, 0x02]: .sha256,  // ecdsa-with-SHA256
            ecdsa + [0x03, 0x03]: .sha384,  // ecdsa-with-SHA384
            ecdsa + [0x03, 0x04]: .sha512,  // ecdsa-with-SHA512
        ]
    }()
}

/// Just enough DER to walk to a certificate's signature algorithm: definite lengths, one-byte tags.
struct DERReader {
    private(set) var bytes: ArraySlice<UInt8>

    init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

    /// The contents of the next element if its tag is `tag`; the reader moves past it.
    mutating func read(tag: UInt8) -> DERReader? {
        guard let first = bytes.first, first == tag else { return nil }
        var index = bytes.startIndex + 1
        guard index < bytes.endIndex else { return nil }
        let lengthByte = bytes[index]
        index += 1
        var length = 0
        if lengthByte < 0x80 {
            length = Int(lengthByte)
        } else {
            let count = Int(lengthByte & 0x7F)
            guard count >= 1, count <= 4, bytes.endIndex - index >= count else { return nil }
            for _ in 0..<count {
                length = length << 8 | Int(bytes[index])
                index += 1
            }
        }
        guard bytes.endIndex - index >= length else { return nil }
        let contents = bytes[index..<(index + length)]
        bytes = bytes[(index + length)...]
        return DERReader(contents)
    }
}
