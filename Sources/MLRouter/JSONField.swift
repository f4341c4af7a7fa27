/// Reads one top-level string field of a small JSON object (a pgml task such as
/// `{"task": "text-generation", "model": "meta-llama/..."}`) without a JSON library on the routing path.
enum JSONField {
    static func string(named name: String, in text: String) -> String? {
        let bytes = Array(text.utf8)
        var index = 0
        func skipSpace() { while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x09 || bytes[index] == 0x0D { index += 1 } }
        func readString() -> String? {
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
            index += 1
            var out: [UInt8] = []
            while index < bytes.count {
                let b = bytes[index]
                if b == UInt8(ascii: "\"") { index += 1; return String(decoding: out, as: UTF8.self) }
                if b == UInt8(ascii: "\\"), index + 1 < bytes.count {
                    let e = bytes[index + 1]
                    switch e {
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"): return nil  // rare in model names; let the caller fall back
                    default: out.append(e)
                    }
                    index += 2
                    continue
                }
                out.append(b)
                index += 1
            }
            return nil
        }
        /// Skips any JSON value (nested objects and arrays counted by depth, strings read whole).
        func skipValue() -> Bool {
            skipSpace()
            guard index < bytes.count else { return false }
            if bytes[index] == UInt8(ascii: "\"") { return readString() != nil }
            var depth = 0
            while index < bytes.count {
                let b = bytes[index]
                if b == UInt8(ascii: "\"") { if readString() == nil { return false }; continue }
                if b == UInt8(ascii: "{") || b == UInt8(ascii: "[") { depth += 1 }
                if b == UInt8(ascii: "}") || b == UInt8(ascii: "]") {
                    if depth == 0 { return true }
                    depth -= 1
                    index += 1
                    if depth == 0 { return true }
                    continue
                }
                if b == UInt8(ascii: ","), depth == 0 { return true }
                index += 1
            }
            return depth == 0
        }
        skipSpace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return nil }
        index += 1
        while true {
            skipSpace()
            guard let key = readString() else { return nil }
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return nil }
            index += 1
            skipSpace()
            if key == name {
                return index < bytes.count && bytes[index] == UInt8(ascii: "\"") ? readString() : nil
            }
            guard skipValue() else { return nil }
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ",") else { return nil }
            index += 1
        }
    }
}
