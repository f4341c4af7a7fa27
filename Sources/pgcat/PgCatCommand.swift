/// `pgcat [CONFIG]`: loads and validates the config, starts the pooler, drains on SIGINT/SIGTERM.
import ArgumentParser
import Config
import Pooler
import Foundation
import Logging
import PgCatServer

@main
struct PgCatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pgcat",
        abstract: "A PostgreSQL connection pooler compatible with PgCat.",
        version: PgCatVersion.string)

    @Argument(help: "Path to the config file (.yaml, .yml or PgCat's .toml).")
    var configFile: String?

    @Option(name: .customLong("config"), help: "Path to the config file (same as the positional argument).")
    var configOption: String?

    @Option(name: [.short, .long], help: "trace, debug, info, notice, warning (or warn), error or critical.")
    var logLevel: String = ProcessInfo.processInfo.environment["LOG_LEVEL"] ?? "info"

    @Option(name: [.customShort("F"), .long], help: "text (logfmt; PgCat's debug is the same), json (or structured).")
    var logFormat: String = ProcessInfo.processInfo.environment["LOG_FORMAT"] ?? "text"

    @Flag(name: [.customShort("n"), .long], help: "Accepted for PgCat compatibility: the log has no colours anyway.")
    var noColor = false

    @Flag(help: "Validate the config, print problems and warnings, and exit (non-zero on error).")
    var check = false

    /// swift-log's level names, and PgCat's (tracing's) `warn`.
    static func logLevel(_ name: String) -> Logger.Level? {
        let lowered = name.lowercased()
        return Logger.Level(rawValue: lowered == "warn" ? "warning" : lowered)
    }

    /// `text` or `json`; PgCat's `structured` is JSON and its `debug` (a verbose text form) is text here.
    static func logFormat(_ name: String) -> LogfmtLogHandler.Format? {
        switch name.lowercased() {
        case "structured": return .json
        case "debug": return .text
        case let other: return LogfmtLogHandler.Format(rawValue: other)
        }
    }

    func run() async throws {
        let path = configOption ?? configFile ?? ProcessInfo.processInfo.environment["CONFIG_FILE"] ?? "pgcat.yaml"
        guard let level = Self.logLevel(logLevel) else {
            throw ValidationError("unknown log level \(logLevel): use trace, debug, info, notice, warning, error or critical")
        }
        guard let format = Self.logFormat(logFormat) else {
            throw ValidationError("unknown log format \(logFormat): use text or json")
        }
        LoggingSystem.bootstrap { label in LogfmtLogHandler(label: label, level: level, format: format) }
        let logger = Logger(label: "pgcat")

        let loaded: LoadedConfig
        do {
            loaded = try ConfigLoader.load(path: path)
            try TLSContexts.validate(loaded.config.general)  // certificate and key files load
        } catch let error as ConfigError {
            FileHandle.standardError.write(Data("pgcat: invalid config \(path):\n".utf8))
            for warning in error.warnings {
                FileHandle.standardError.write(Data("  warning: \(warning)\n".utf8))
            }
            for problem in error.problems {
                FileHandle.standardError.write(Data("  \(problem)\n".utf8))
            }
            throw ExitCode(78)  // EX_CONFIG, as PgCat
        }
        if check {  // (the warnings once, on stdout: no log line besides)
            for warning in loaded.warnings { print("warning: \(warning)") }
            print("\(path): OK")
            return
        }
        for warning in loaded.warnings {
            logger.warning("config warning", metadata: ["warning": "\(warning)"])
        }
        Runner.lastWarnings.withLockedValue { $0 = loaded.warnings.map { "\($0)" } }
        try await Runner(config: loaded.config, path: path, logger: logger).run()
    }
}

