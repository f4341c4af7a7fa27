/// The result and error types of loading a config: problems name the key path they are about.

/// A config that loaded and validated, with the warnings found on the way (e.g. PgCat keys ignored in a TOML file).
public struct LoadedConfig: Sendable {
    public var config: PgCatConfig
    public var warnings: [String]

    public init(config: PgCatConfig, warnings: [String] = []) {
        self.config = config
        self.warnings = warnings
    }
}

/// One thing wrong with a config. `keyPath` is empty for file-level problems (unreadable file, syntax error).
public struct ConfigProblem: Sendable, Equatable, CustomStringConvertible {
    public var keyPath: String
    public var reason: String

    public init(keyPath: String, reason: String) {
        self.keyPath = keyPath
        self.reason = reason
    }

    /// `pools.app.users.0.pool_size: must be at least 1`
    public var description: String {
        keyPath.isEmpty ? reason : "\(keyPath): \(reason)"
    }
}

/// Loading failed; `problems` lists every problem found, not only the first.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public var problems: [ConfigProblem]
    /// Warnings found before the config was rejected (shown by `--check` too).
    public var warnings: [String]

    public init(problems: [ConfigProblem], warnings: [String] = []) {
        self.problems = problems
        self.warnings = warnings
    }

    public var description: String {
        let noun = problems.count == 1 ? "problem" : "problems"
        return "invalid config (\(problems.count) \(noun)):\n"
            + problems.map { "  - \($0.description)" }.joined(separator: "\n")
    }
}

/// Collects problems and warnings. Keeps one problem per key path (the first), so a missing key is not also
/// reported as out of range, and none below a value that could not be read at all (`unusable`).
struct ProblemSink {
    private(set) var problems: [ConfigProblem] = []
    private(set) var warnings: [String] = []
    private var seenPaths: Set<String> = []
    private var unusablePaths: [String] = []

    /// `unusable`: the value at `keyPath` has the wrong shape, so problems about its children are noise.
    mutating func add(_ keyPath: String, _ reason: String, unusable: Bool = false) {
        if !keyPath.isEmpty {
            guard !unusablePaths.contains(where: { keyPath.hasPrefix($0 + ".") }) else { return }
            guard seenPaths.insert(keyPath).inserted else { return }
            if unusable { unusablePaths.append(keyPath) }
        }
        problems.append(ConfigProblem(keyPath: keyPath, reason: reason))
    }

    mutating func add(_ problem: ConfigProblem) {
        add(problem.keyPath, problem.reason)
    }

    mutating func warn(_ keyPath: String, _ message: String) {
        warnings.append(keyPath.isEmpty ? message : "\(keyPath): \(message)")
    }
}
