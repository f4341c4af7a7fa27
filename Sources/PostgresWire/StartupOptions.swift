/// The `options` startup parameter (libpq's `options`, `PGOPTIONS`), read as PostgreSQL reads it: split at unescaped
/// white space (a backslash keeps the next character, spaces included), then `-c name=value`, `-cname=value` and
/// `--name=value` each set one parameter; a dash in the name is an underscore. PostgreSQL's other server switches
/// (`-B`, `-d`, ...) configure a backend process and have no meaning through a pooler: they are refused.
public enum StartupOptions {
    public struct Failure: Error, Equatable, CustomStringConvertible {
        /// The SQLSTATE PostgreSQL gives for it (42601), or 0A000 for a server switch a pooler cannot honour.
        public let state: SQLState
        public let message: String
        public var description: String { message }

        public init(state: SQLState, message: String) {
            self.state = state
            self.message = message
        }
    }

    /// The settings `options` asks for, in order (a later one of the same name wins when applied).
    public static func settings(in options: String) throws(Failure) -> [(name: String, value: String)] {
        let words = split(options)
        var result: [(name: String, value: String)] = []
        var index = 0
        while index < words.count {
            let word = words[index]
            index += 1
            if word == "--" {  // getopt's end of switches: nothing may follow
                guard index == words.count else {
                    throw Failure(state: .syntaxError, message: "invalid command-line argument in options: \"\(words[index])\"")
                }
                break
            }
            guard word.hasPrefix("-"), word.count >= 2 else {
                throw Failure(state: .syntaxError, message: "invalid command-line argument in options: \"\(word)\"")
            }
            let argument: String
            let flag: String
            if word.hasPrefix("--") {
                flag = "--"
                argument = String(word.dropFirst(2))
            } else if word.hasPrefix("-c") {
                flag = "-c"
                if word.count > 2 {
                    argument = String(word.dropFirst(2))
                } else {
                    guard index < words.count else {
                        throw Failure(state: .syntaxError, message: "option -c in options requires an argument")
                    }
                    argument = words[index]
                    index += 1
                }
            } else {
                throw Failure(state: .featureNotSupported,
                              message: "unsupported server switch \"\(word)\" in options: a pooler accepts only -c name=value and --name=value")
            }
            guard let equals = argument.firstIndex(of: "="), equals != argument.startIndex else {
                throw Failure(state: .syntaxError, message: "\(flag)\(flag == "-c" ? " " : "")\(argument) requires a value")
            }
            let name = String(argument[..<equals].map { $0 == "-" ? "_" : $0 })
            result.append((name, String(argument[argument.index(after: equals)...])))
        }
        return result
    }

    /// PostgreSQL's `pg_split_opts`: words separated by unescaped ASCII white space (C's `isspace`); a backslash
    /// escapes the next character. By code point, as the C code goes by byte.
    static func split(_ options: String) -> [String] {
        var words: [String] = []
        var current = String.UnicodeScalarView()
        var inWord = false
        var escaped = false
        for character in options.unicodeScalars {
            if escaped {
                current.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
                inWord = true
            } else if character == " " || ("\t"..."\r").contains(character) {  // space, \t \n \v \f \r
                if inWord { words.append(String(current)) }
                current = String.UnicodeScalarView()
                inWord = false
            } else {
                current.append(character)
                inWord = true
            }
        }
        if inWord { words.append(String(current)) }
        return words
    }
}
