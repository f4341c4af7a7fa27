/// The schemas of a `search_path` value, read as PostgreSQL reads a list setting (`SplitIdentifierString`), so the
/// ML router knows whether an unqualified `embed(...)` is pgml's. Pure.
import QueryParser

public enum SearchPath {
    /// `pgml, "Public"` -> `["pgml", "Public"]`: comma-separated; white space around an element is dropped; a
    /// double-quoted element keeps its case (`""` is a quote), others are lower-cased. Nil when malformed.
    public static func schemas(inSetting value: String) -> [String]? {
        var schemas: [String] = []
        var characters = Array(value.unicodeScalars)[...]
        func skipSpace() { while let first = characters.first, isSpace(first) { characters.removeFirst() } }
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
                while let next = characters.first, next != ",", !isSpace(next) {
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

    /// PostgreSQL's `scanner_isspace`: ASCII white space only.
    private static func isSpace(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case " ", "\t", "\n", "\r", "\u{0B}", "\u{0C}": return true
        default: return false
        }
    }

    /// Whether a search_path with these schemas finds pgml's functions by their bare names. (`"$user"` is not
    /// followed: a role named pgml would find them through it.)
    public static func includesPGML(_ schemas: [String]) -> Bool {
        schemas.contains("pgml")
    }

    /// Whether pgml is on the search_path at statement `statement` of a text: as the text started, changed by the
    /// text's earlier statements. A reset goes back to the server connection's default, which the pooler does not
    /// know (the client's login value was applied with `set_config`, which RESET does not return to): not pgml.
    public static func includesPGML(at statement: Int, startingWith initial: Bool,
                                    changes: [QueryFacts.SearchPathStep]) -> Bool {
        var onPath = initial
        for step in changes where step.statement < statement {
            switch step.change {
            case .set(let schemas): onPath = includesPGML(schemas)
            case .reset: onPath = false
            }
        }
        return onPath
    }
}
