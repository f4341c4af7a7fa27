/// Entry point: reads a YAML or TOML config file (chosen by extension), decodes and validates it.

import Foundation

public enum ConfigLoader {
    /// Loads `path`: `.yaml`/`.yml` as YAML, `.toml` as a PgCat TOML file. Throws `ConfigError` listing every
    /// problem (an unreadable file names the path).
    public static func load(path: String) throws -> LoadedConfig {
        let ext = (path as NSString).pathExtension.lowercased()
        guard ["yaml", "yml", "toml"].contains(ext) else {
            throw ConfigError(problems: [ConfigProblem(
                keyPath: "",
                reason: "cannot tell the format of config file '\(path)': use a .yaml, .yml or .toml extension")])
        }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            let why = (error as NSError).localizedFailureReason ?? (error as NSError).localizedDescription
            throw ConfigError(problems: [
                ConfigProblem(keyPath: "", reason: "cannot read config file '\(path)': \(why)"),
            ])
        }
        return ext == "toml" ? try parse(toml: text, path: path) : try parse(yaml: text, path: path)
    }

    /// Parses YAML text; `path` is only recorded in the result and used in messages.
    public static func parse(yaml: String, path: String = "") throws -> LoadedConfig {
        let root: ConfigNode
        do {
            root = try YAMLReader.read(yaml)
        } catch {
            throw prefixed(error, path: path)
        }
        return try build(root, syntax: .yaml, path: path)
    }

    /// Parses PgCat TOML text; keys PgCat would ignore become warnings instead of errors.
    public static func parse(toml: String, path: String = "") throws -> LoadedConfig {
        let root: ConfigNode
        do {
            root = try TOMLParser.parse(toml)
        } catch {
            let location = path.isEmpty ? "" : "\(path): "
            throw ConfigError(problems: [
                ConfigProblem(keyPath: "", reason: "\(location)TOML syntax error at \(error)"),
            ])
        }
        return try build(root, syntax: .toml, path: path)
    }

    /// Decodes and validates a tree, sharing one problem list so a key is reported once.
    static func build(_ root: ConfigNode, syntax: ConfigSyntax, path: String) throws(ConfigError) -> LoadedConfig {
        guard case .table = root else {
            let location = path.isEmpty ? "" : "\(path): "
            throw ConfigError(problems: [ConfigProblem(
                keyPath: "", reason: "\(location)the config must be a mapping of sections (general, pools, ...), "
                    + "found \(root.kindDescription)")])
        }
        let context = DecodeContext(syntax: syntax)
        let config = context.decodeRoot(root, path: path)
        ConfigValidator(config: config, labels: context.labels).run(into: &context.sink)
        guard context.sink.problems.isEmpty else {
            throw ConfigError(problems: context.sink.problems, warnings: context.sink.warnings)
        }
        return LoadedConfig(config: config, warnings: context.sink.warnings)
    }

    private static func prefixed(_ error: ConfigError, path: String) -> ConfigError {
        guard !path.isEmpty else { return error }
        var error = error
        for i in error.problems.indices where error.problems[i].keyPath.isEmpty {
            error.problems[i].reason = "\(path): \(error.problems[i].reason)"
        }
        return error
    }
}
