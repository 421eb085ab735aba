import Foundation
import TestSupport
import Testing

/// docs/ARCHITECTURE.md is the project's own account of how the code is built, and the one comments may
/// point to. These keep it from falling behind the tree: a new module must be described there, and no
/// file may send a reader to the original design document, which is not in the repository.
@Suite("Architecture document")
struct ArchitectureDocumentTests {
    static let root = TestEnvironment.repositoryRoot

    /// Where code, tests, scripts and docs live; each is searched whole.
    static let searchedDirectories = ["Sources", "Tests", "scripts", "bench", "systemd", "config", "docs", "migrations", ".ci"]
    static let searchedFiles = ["Package.swift", "README.md", "Makefile", "openapi.yaml"]

    /// The ways a citation of the design document is spelled: its file name, and a section reference.
    /// Built from pieces so that this file does not cite it itself.
    static let citations = ["DESIGN" + ".md", "DESIGN" + " §"]

    @Test("no file cites the design document, which is not in the repository")
    func noFileCitesTheDesignDocument() throws {
        var files = Self.searchedFiles.map { Self.root.appendingPathComponent($0) }
        for directory in Self.searchedDirectories {
            files += try Self.regularFiles(under: Self.root.appendingPathComponent(directory))
        }
        #expect(files.count > 100, "the search found only \(files.count) files: is the repository root right?")
        var found: [String] = []
        for file in files {
            let data = try Data(contentsOf: file)
            if data.contains(0) { continue }  // binary (docs/console.png)
            let text = String(decoding: data, as: UTF8.self)
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                if Self.citations.contains(where: { line.range(of: $0, options: .caseInsensitive) != nil }) {
                    found.append("\(Self.relative(file)):\(number + 1): \(line.trimmingCharacters(in: .whitespaces))")
                }
            }
        }
        #expect(
            found.isEmpty,
            """
            these lines cite the design document; say what they mean in place, or point to docs/ARCHITECTURE.md:
            \(found.joined(separator: "\n"))
            """)
    }

    @Test("every module under Sources/ has a heading or a bold name in docs/ARCHITECTURE.md")
    func everyModuleIsDescribed() throws {
        let document = try String(contentsOf: Self.root.appendingPathComponent("docs/ARCHITECTURE.md"), encoding: .utf8)
        let lines = document.split(separator: "\n").map(String.init)
        let modules = try FileManager.default.contentsOfDirectory(atPath: Self.root.appendingPathComponent("Sources").path)
            .filter { !$0.hasPrefix(".") }
            .filter { name in
                var isDirectory: ObjCBool = false
                return FileManager.default.fileExists(
                    atPath: Self.root.appendingPathComponent("Sources/\(name)").path,
                    isDirectory: &isDirectory) && isDirectory.boolValue
            }
            .sorted()
        #expect(modules.contains("Afterimage") && modules.contains("MicroHTTP"), "Sources/ lists \(modules)")
        let missing = modules.filter { module in
            !lines.contains { line in
                (line.hasPrefix("#") && line.contains("`\(module)`")) || line.contains("**\(module)**") || line.contains("**`\(module)`**")
            }
        }
        #expect(
            missing.isEmpty,
            """
            docs/ARCHITECTURE.md does not describe these modules (a heading naming `Module`, or **Module**, \
            saying what it may and may not import): \(missing.joined(separator: ", "))
            """)
    }

    /// Every regular file below `directory`, build products aside.
    static func regularFiles(under directory: URL) throws -> [URL] {
        guard let walk = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: [.isRegularFileKey]) else {
            throw TestSupportError("cannot list \(directory.path)")
        }
        var files: [URL] = []
        for case let url as URL in walk {
            if url.lastPathComponent == ".build" || url.lastPathComponent == "__pycache__" {
                walk.skipDescendants()
                continue
            }
            if try url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile == true { files.append(url) }
        }
        return files
    }

    static func relative(_ file: URL) -> String {
        let path = file.standardizedFileURL.path
        let base = root.standardizedFileURL.path + "/"
        return path.hasPrefix(base) ? String(path.dropFirst(base.count)) : path
    }
}
