import Curl
import Foundation
import TestSupport
import Testing

@testable import Afterimage

/// `POST /v1/archives` end to end: tokens, the fetch policy's verdict, idempotence by id, conflicts, and
/// the archived files looked up like any provider's.
@Suite("Archive API: any expiring URL", .serialized)
struct ArchiveAPITests {
    @Test func urlsAreArchivedOncePerIdAndLookedUp() throws {
        let harness = try ArchiveHarness()
        let readToken = "read_" + UUID().uuidString
        let archiveToken = "archive_" + UUID().uuidString
        let daemon = try harness.startDaemon(extra: [
            "AFTERIMAGE_API_TOKENS": readToken,
            "AFTERIMAGE_API_ARCHIVE_TOKENS": "sha256:" + FakeProvider.sha256Hex(Array(archiveToken.utf8)),
        ])
        let client = try LookupClient(port: daemon.port, token: archiveToken)
        let id = "openai-\(UUID().uuidString.prefix(8).lowercased())"
        let urls = [harness.fake.url("\(id)-a.png", "size=1500&type=image/png"), harness.fake.url("\(id)-b.webp", "size=1600&type=image/webp")]
        let deadline = Date().addingTimeInterval(3600)
        func request(_ urls: [String], id: String = id) -> [UInt8] {
            Array(
                try! JSONSerialization.data(withJSONObject: [
                    "id": id, "urls": urls, "deadline": ISO8601DateFormatter().string(from: deadline),
                    "metadata": ["app": "test", "model": "gpt-image-1"],
                ]))
        }
        func post(_ body: [UInt8], authorization: String? = nil) throws -> LookupAnswer {
            try client.send("POST", "/v1/archives", authorization: authorization, headers: [("Content-Type", "application/json")], body: body)
        }

        #expect(try post(request(urls), authorization: "").status == 401, "no token")
        #expect(try post(request(urls), authorization: "Bearer nope").status == 401, "an unknown token")
        let readOnly = try post(request(urls), authorization: "Bearer \(readToken)")
        #expect(readOnly.status == 403, "a lookup token may not archive")
        #expect(client.errorCode(readOnly) == "token_not_permitted")
        let refusedHost = try post(request([urls[0], "https://files.example.net/x.png"]))
        #expect(refusedHost.status == 422)
        #expect(String(decoding: refusedHost.body, as: UTF8.self).contains("urls[1]"))
        #expect(try post(request(["ftp://127.0.0.1/x.png"])).status == 422, "a scheme the policy refuses")
        #expect(try post(Array(#"{"id":"../up","urls":["http://127.0.0.1/x"]}"#.utf8)).status == 400)
        #expect(try harness.scalar("SELECT count(*) FROM predictions", as: Int.self) == 0, "nothing recorded for a refused request")

        let accepted = try post(request(urls))
        #expect(accepted.status == 202, "\(String(decoding: accepted.body, as: UTF8.self))")
        let json = try client.json(accepted)
        #expect(json["provider"] as? String == "archive" && json["prediction_id"] as? String == id && json["assets"] as? Int == 2)
        try harness.waitForAssets("stored", count: 2)
        let stored = try harness.storedAssets(predictionID: id)
        #expect(stored.map(\.key) == ["\(harness.prefix)archive/\(id)/0.png", "\(harness.prefix)archive/\(id)/1.webp"])
        let recordedDeadline = try harness.scalar("SELECT extract(epoch FROM min(deadline))::float8 FROM assets", as: Double.self)
        #expect(abs(recordedDeadline - deadline.timeIntervalSince1970) < 2)

        // The same id and URLs again (a client's retry): 200, nothing fetched twice.
        let repeated = try post(request(urls))
        #expect(repeated.status == 200)
        #expect(try client.json(repeated)["assets"] as? Int == 2)
        // The same id with other URLs: a conflict, nothing changed.
        let conflict = try post(request([urls[1]]))
        #expect(conflict.status == 409)
        #expect(client.errorCode(conflict) == "archive_conflict")
        #expect(try harness.scalar("SELECT count(*) FROM assets", as: Int.self) == 2)
        #expect(try harness.fake.count("\(id)-a.png") == 1 && harness.fake.count("\(id)-b.webp") == 1)

        let reader = try LookupClient(port: daemon.port, token: readToken)
        let lookup = try reader.json(try reader.send("GET", "/v1/predictions/archive/\(id)"))
        #expect(lookup["status"] as? String == "succeeded")
        #expect((lookup["input"] as? [String: Any])?["model"] as? String == "gpt-image-1", "metadata is kept as the input")
        #expect((lookup["assets"] as? [[String: Any]])?.allSatisfy { $0["state"] as? String == "stored" } == true)
        #expect(try reader.send("GET", "/v1/predictions/archive/\(id)/outputs/0").status == 302)
        try client.validateCaptured()
        try reader.validateCaptured()
        #expect(try daemon.stop() == 0)
    }

    /// The README's curl and Python examples, as written, against a test daemon.
    @Test func theReadmeExamplesArchive() throws {
        let harness = try ArchiveHarness()
        let token = "archive_" + UUID().uuidString
        let daemon = try harness.startDaemon(extra: ["AFTERIMAGE_API_ARCHIVE_TOKENS": token])
        let base = "http://127.0.0.1:\(daemon.port)"
        let environment = [
            "AFTERIMAGE_URL": base, "AFTERIMAGE_ARCHIVE_TOKEN": token,
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
        ]
        let curl = try ReadmeSnippet.block("archive-curl")
            .replacingOccurrences(of: "https://archive.example.com", with: base)
            .replacingOccurrences(of: "https://…", with: harness.fake.url("readme-curl.png", "size=700&type=image/png"))
        let (curlStatus, curlOutput) = try runProcess("/bin/sh", ["-c", curl], environment: environment)
        #expect(curlStatus == 0)
        let answer = try JSONSerialization.jsonObject(with: Data(curlOutput.utf8)) as? [String: Any]
        #expect(answer?["prediction_id"] as? String == "poster-42" && answer?["assets"] as? Int == 1, "\(curlOutput)")

        let folder = NSTemporaryDirectory() + "afterimage-readme-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try ReadmeSnippet.block("archive-python").write(toFile: folder + "/archive_urls.py", atomically: true, encoding: .utf8)
        let url = harness.fake.url("readme-python.webp", "size=800&type=image/webp")
        let (pythonStatus, pythonOutput) = try runProcess(
            "/usr/bin/env",
            [
                "python3", "-c",
                "import json, sys; sys.path.insert(0, sys.argv[1]); import archive_urls; "
                    + "print(json.dumps(archive_urls.archive('readme-py', [sys.argv[2]], deadline='2030-01-01T00:00:00Z', model='dall-e-3')))",
                folder, url,
            ], environment: environment)
        #expect(pythonStatus == 0, "\(pythonOutput)")
        #expect(pythonOutput.contains("\"prediction_id\": \"readme-py\""), "\(pythonOutput)")
        try harness.waitForAssets("stored", count: 2)
        #expect(try harness.scalar("SELECT input->>'model' FROM predictions WHERE id = 'readme-py'", as: String.self) == "dall-e-3")
        #expect(try daemon.stop() == 0)
    }
}

/// Runs a command to completion: (exit status, stdout).
func runProcess(_ executable: String, _ arguments: [String], environment: [String: String]) throws -> (Int32, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = environment
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    try launchWithDefaultSignals(process)
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}
