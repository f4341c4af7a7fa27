/// The schemas of a `search_path` value, read as PostgreSQL reads a list setting (`SplitIdentifierString`), so the
/// ML router knows whether an unqualified `embed(...)` is pgml's. Pure.
public enum SearchPath {
    /// `pgml, "Public"` -> `["pgml", "Public"]`: comma-separated; white space around an element is dropped; a
    /// double-quoted element keeps its case (`""` is a quote), others are lower-cased. Nil when malformed.
    public static func schemas(inSetting value: String) -> [String]? {
        var schemas: [String] = []
        var characters = Array(value.unicodeScalars)[...]
        func skipSpace() { while let first = characters.first, first.properties.isWhitespace { characters.removeFirst() } }
        skipSpace()
        if characters.isEmpty { return [] }
        while true {
            var name = ""
            if characters.first == "\"" {
                characters.removeFirst()
                while true {
                    guard let next = characters.popFirst() else { return nil }  // unterminated quote
                    if next == "\"" {
                        guard characters.first == "\"" else { break }
                        characters.removeFirst()
                    }
                    name.unicodeScalars.append(next)
                }
                if name.isEmpty { return nil }
            } else {
                while let next = characters.first, next != ",", !next.properties.isWhitespace {
                    name.unicodeScalars.append(next)
                    characters.removeFirst()
                }
                if name.isEmpty { return nil }
                name = String(name.unicodeScalars.map { $0.isASCII ? Character($0).lowercased() : String($0) }.joined())
            }
            schemas.append(name)
            skipSpace()
            guard let separator = characters.popFirst() else { return schemas }
            guard separator == "," else { return nil }
            skipSpace()
        }
    }

    /// Whether a search_path with these schemas finds pgml's functions by their bare names.
    public static func includesPGML(_ schemas: [String]) -> Bool {
        schemas.contains("pgml")
    }
}

extension SearchPath {
    /// Cheap first look (no allocation): could the text change search_path (`search_path`, `RESET`, `DISCARD`)?
    public static func mightChange(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            contains(bytes, "search_path") || contains(bytes, "reset") || contains(bytes, "discard")
        }
    }

    /// Whether `bytes` contain `word` (lower-case ASCII letters and `_`), ignoring ASCII case.
    private static func contains(_ bytes: UnsafeBufferPointer<UInt8>, _ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard bytes.count >= count else { return false }
        let pattern = UnsafeBufferPointer(start: word.utf8Start, count: count)
        outer: for start in 0...(bytes.count - count) {
            for offset in 0..<count where bytes[start + offset] | 0x20 != pattern[offset] | 0x20 { continue outer }
            return true
        }
        return false
    }
}
