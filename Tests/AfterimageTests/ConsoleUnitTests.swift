import Foundation
import Logging
import MicroHTTP
import TestSupport
import Testing

@testable import Afterimage

@Suite("Console: embedded files, headers, cursor")
struct ConsoleUnitTests {
    static let directory = TestEnvironment.repositoryRoot.appendingPathComponent("Sources/Afterimage/Console/Files")

    static func sourceFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { !$0.hasPrefix(".") }.sorted()
    }

    /// The binary serves every file Console/Files holds: fails when a file is added there but not named in
    /// Package.swift's resources and EmbeddedConsole.
    @Test func embeddedCopyMatchesTheFiles() throws {
        let files = try Self.sourceFiles()
        #expect(files == ["console.css", "console.js", "favicon.svg", "index.html"])
        #expect(EmbeddedConsole.files.keys.sorted() == files)
        for name in files {
            let onDisk = try String(contentsOf: Self.directory.appendingPathComponent(name), encoding: .utf8)
            #expect(
                EmbeddedConsole.files[name]?.trimmingCharacters(in: .whitespacesAndNewlines)
                    == onDisk.trimmingCharacters(in: .whitespacesAndNewlines),
                "\(name) differs from its embedded copy")
        }
    }

    @Test func theWholeConsoleIsSmall() {
        let total = EmbeddedConsole.files.values.reduce(0) { $0 + $1.utf8.count }
        #expect(total < 100 * 1024, "the console is \(total) bytes; the budget is 100 KiB")
    }

    /// No inline script or style (the CSP forbids both, so they would only break), no handler attributes,
    /// nothing loaded from another origin (no CDN, no web fonts).
    @Test func thePageLoadsOnlyItsOwnFilesAndNoInlineCode() throws {
        let html = try #require(EmbeddedConsole.files["index.html"])
        let scripts = html.components(separatedBy: "<script").dropFirst()
        #expect(scripts.count == 1)
        for script in scripts {
            #expect(script.hasPrefix(" src=\"console.js\" defer></script>"), "inline or extra script: <script\(script.prefix(60))")
        }
        #expect(!html.contains("<style"))
        #expect(!html.contains(" style="))
        #expect(!html.contains("javascript:"))
        #expect(html.range(of: #"\son[a-z]+="#, options: .regularExpression) == nil, "an inline event handler attribute")
        for file in EmbeddedConsole.files.values {
            #expect(file.range(of: #"(src|href)="(https?:)?//"#, options: .regularExpression) == nil, "a resource from another origin")
            #expect(!file.contains("@import") && !file.contains("url(http"), "a style sheet or font from another origin")
        }
        let script = try #require(EmbeddedConsole.files["console.js"])
        #expect(
            !script.contains("innerHTML") && !script.contains("eval(") && !script.contains("new Function"),
            "API text must reach the page as text, and the CSP forbids eval")
        #expect(script.contains("sessionStorage") && !script.contains("localStorage") && !script.contains("document.cookie"))
    }

    @Test func bucketOriginFollowsTheAddressingStyle() {
        var storage = Settings.Storage()
        storage.endpoint = "http://127.0.0.1:18333"
        storage.bucket = "afterimage"
        #expect(ConsoleRoutes.bucketOrigin(storage) == "http://127.0.0.1:18333")
        storage.endpoint = "https://s3.eu-west-1.amazonaws.com/"
        storage.bucket = "my-archive"
        storage.pathStyle = false
        #expect(ConsoleRoutes.bucketOrigin(storage) == "https://my-archive.s3.eu-west-1.amazonaws.com")
        storage.endpoint = nil
        #expect(ConsoleRoutes.bucketOrigin(storage) == nil)
        let headers = Dictionary(uniqueKeysWithValues: ConsoleRoutes.securityHeaders(bucketOrigin: "https://b.example:9000"))
        #expect(
            headers["Content-Security-Policy"]
                == "default-src 'self'; img-src 'self' https://b.example:9000; media-src 'self' https://b.example:9000; frame-ancestors 'none'")
        #expect(headers["X-Content-Type-Options"] == "nosniff")
        #expect(headers["Referrer-Policy"] == "no-referrer")
    }

    @Test func filesAreServedFromMemoryWithValidators() throws {
        var settings = Settings()
        settings.storage.endpoint = "http://127.0.0.1:9"
        settings.storage.bucket = "b"
        let routes = ConsoleRoutes(settings: settings, logger: Logger(label: "test"))
        let page = routes.serve("index.html", Request(method: "GET", path: "/ui/"))
        #expect(page.status == 200)
        #expect(page.body == Array(try #require(EmbeddedConsole.files["index.html"]).utf8))
        let etag = try #require(page.headers.first { $0.0 == "ETag" }?.1)
        let revalidated = routes.serve("index.html", Request(method: "GET", path: "/ui/", headers: ["If-None-Match": "\"other\", \(etag)"]))
        #expect(revalidated.status == 304)
        #expect(revalidated.body.isEmpty)
        #expect(revalidated.headers.contains { $0.0 == "Content-Security-Policy" })
        let missing = routes.serve("../Package.swift", Request(method: "GET", path: "/ui/..%2FPackage.swift"))
        #expect(missing.status == 404)
    }

    @Test func cursorsRoundTripAndForgeriesAreRefused() throws {
        let cursor = PredictionCursor(firstSeenAt: "2026-11-21 10:00:00.123456+00", provider: "replicate", id: "a/b \"c\" ü")
        let encoded = cursor.encoded
        #expect(encoded.range(of: "^[A-Za-z0-9_-]+$", options: .regularExpression) != nil, "not URL-safe: \(encoded)")
        #expect(try PredictionCursor(encoded: encoded) == cursor)
        #expect(try PredictionCursor(encoded: PredictionCursor(firstSeenAt: "2026-11-21 10:00:00+00", provider: "p", id: "i").encoded).id == "i")
        for bad in [
            "", "!!!", String(repeating: "A", count: 2000),
            PredictionCursor(firstSeenAt: "2026-11-21T10:00:00Z", provider: "p", id: "i").encoded,
            PredictionCursor(firstSeenAt: "2026-11-21 10:00:00.1234567+00", provider: "p", id: "i").encoded,
            PredictionCursor(firstSeenAt: "2026-11-21 10:00:00+01", provider: "p", id: "i").encoded,
            PredictionCursor(firstSeenAt: "2026-11-21 10:00:00+00'; --", provider: "p", id: "i").encoded,
            PredictionCursor(firstSeenAt: "2026-11-21 10:00:00+00", provider: "", id: "i").encoded,
            Data(#"["2026-11-21 10:00:00+00","p"]"#.utf8).base64EncodedString(),
        ] {
            #expect(throws: LookupError.self, "\(bad.prefix(40))") { try PredictionCursor(encoded: bad) }
        }
    }

    @Test func eachFilterCombinationBindsItsOwnParameters() {
        let cursor = PredictionCursor(firstSeenAt: "2026-11-21 10:00:00+00", provider: "replicate", id: "x")
        let all = LookupStore.predictionListQuery(.init(limit: 10))
        #expect(all.parameters.count == 2)
        #expect(!all.sql.contains("$3"))
        let paged = LookupStore.predictionListQuery(.init(before: cursor, limit: 10))
        #expect(paged.parameters.count == 5)
        #expect(paged.sql.contains("(p.first_seen_at, p.provider, p.id) < ($3::timestamptz, $4::text, $5::text)"))
        let oneProvider = LookupStore.predictionListQuery(.init(provider: "replicate", before: cursor, limit: 500))
        #expect(oneProvider.parameters.count == 5)
        #expect(oneProvider.parameters.first as? Int == LookupStore.maxPredictionPageSize + 1)
        #expect(oneProvider.sql.contains("p.provider = $3 AND (p.first_seen_at, p.id) < ($4::timestamptz, $5::text)"))
    }

    @Test func uiEnabledDefaultsToTrueAndCanBeTurnedOff() async throws {
        let defaults = try await SettingsLoader.load(configFile: nil, environment: [:])
        #expect(defaults.ui.enabled)
        let off = try await SettingsLoader.load(configFile: nil, environment: ["AFTERIMAGE_UI_ENABLED": "false"])
        #expect(!off.ui.enabled)
        #expect(off.redactedDescription().contains("ui.enabled = false"))
        await #expect(throws: ConfigurationError.self) {
            try await SettingsLoader.load(configFile: nil, environment: ["AFTERIMAGE_UI_ENABLED": "maybe"])
        }
    }
}
