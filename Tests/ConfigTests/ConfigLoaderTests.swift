/// `ConfigLoader.load(path:)`: format by extension, the path recorded, unreadable files named in the error.

import Foundation
import XCTest
import Config

final class ConfigLoaderTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("config-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try FileManager.default.removeItem(at: directory)
    }

    private func write(_ name: String, _ text: String) throws -> String {
        let url = directory.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    func testLoadsByExtension() throws {
        let yaml = try write("pgcat.yaml", Fixtures.referenceYAML)
        let yml = try write("pgcat.yml", Fixtures.referenceYAML)
        let toml = try write("pgcat.toml", Fixtures.referenceTOML)
        let fromYAML = try ConfigLoader.load(path: yaml).config
        XCTAssertEqual(fromYAML.path, yaml)
        XCTAssertEqual(try ConfigLoader.load(path: yml).config.pools, fromYAML.pools)
        let fromTOML = try ConfigLoader.load(path: toml).config
        XCTAssertEqual(fromTOML.path, toml)
        XCTAssertEqual(fromTOML.general, fromYAML.general)
        XCTAssertEqual(fromTOML.pools, fromYAML.pools)
    }

    func testTOMLTextInAYAMLFileIsAYAMLError() throws {
        let path = try write("pgcat.yaml", Fixtures.referenceTOML)
        XCTAssertThrowsError(try ConfigLoader.load(path: path)) { error in
            XCTAssertFalse((error as? ConfigError)?.problems.isEmpty ?? true)
        }
    }

    func testUnreadableFileNamesThePath() {
        let path = directory.appendingPathComponent("missing.yaml").path
        XCTAssertThrowsError(try ConfigLoader.load(path: path)) { error in
            let problems = (error as? ConfigError)?.problems ?? []
            XCTAssertEqual(problems.count, 1)
            XCTAssertTrue(problems.first?.reason.contains(path) == true, "\(problems)")
            XCTAssertTrue("\(error)".contains(path))
        }
    }

    func testUnknownExtensionIsRejected() throws {
        let path = try write("pgcat.conf", "general: {}\n")
        XCTAssertThrowsError(try ConfigLoader.load(path: path)) { error in
            XCTAssertTrue("\(error)".contains(".yaml, .yml or .toml"), "\(error)")
        }
    }

    func testErrorDescriptionListsEveryProblem() {
        let error = ConfigError(problems: [
            ConfigProblem(keyPath: "general.port", reason: "must be between 1 and 65535, found 0"),
            ConfigProblem(keyPath: "", reason: "file-level"),
        ])
        XCTAssertEqual(error.description, """
            invalid config (2 problems):
              - general.port: must be between 1 and 65535, found 0
              - file-level
            """)
    }
}
