import Foundation
import Primitives
import TestSupport
import Testing

@testable import Afterimage

/// Issue 13, points 8, 9, 11 and 13 at the unit level: URL userinfo never printed, configured URLs
/// validated at load, operator output escaped, object metadata bounded, spool paths normalised.
@Suite("Integrity: redaction, validation, escaping, metadata, spool paths")
struct IntegrityUnitTests {
    @Test func userinfoOfEveryURLIsMasked() {
        let cases: [(String, String)] = [
            ("https://AKIAEXAMPLE:wJalrXUtnFEMI@s3.example.com/b", "https://***@s3.example.com/b"),
            ("connect postgresql://afterimage:hunter2@db:5432/x failed", "connect postgresql://***@db:5432/x failed"),
            ("two: http://a@h1 and s3+https://u:p:q@h2?x=1", "two: http://***@h1 and s3+https://***@h2?x=1"),
            ("\"https://u:p@h\"", "\"https://***@h\""),
            ("https://h/path?mail=a@b.example#x@y", "https://h/path?mail=a@b.example#x@y"),
            ("user@example.com wrote", "user@example.com wrote"),
            ("no url here", "no url here"),
            ("://u:p@h", "://u:p@h"),
        ]
        for (text, expected) in cases {
            #expect(URLRedaction.redactingUserInfo(text) == expected, "\(text)")
        }
    }

    @Test func logLinesMaskUserinfoInTheMessageAndEveryValue() {
        for format in [StderrLogHandler.Format.logfmt, .journal] {
            let line = StderrLogHandler.render(
                level: .error, message: "cannot reach https://AKIA1:secret1@bucket.example/x",
                metadata: ["error": "GET https://user:secret2@api.example/v1 failed", "url": .string("postgresql://me:secret3@db/a")],
                format: format, now: Date())
            for secret in ["secret1", "secret2", "secret3", "AKIA1", "user:", "me:"] {
                #expect(!line.contains(secret), "\(format): \(line)")
            }
            #expect(line.contains("https://***@bucket.example/x"))
            #expect(line.contains("postgresql://***@db/a"))
        }
    }

    @Test func configuredURLsAreValidatedAtLoadWithoutEchoingThem() async throws {
        for (key, value) in [
            ("storage.endpoint", "https://AKIAX:topsecret@s3.example.com"),
            ("storage.endpoint", "https://s3.example.com/bucket"),
            ("storage.endpoint", "ftp://s3.example.com"),
            ("storage.endpoint", "s3.example.com"),
            ("stability.base_url", "https://user:topsecret@api.stability.ai"),
            ("stability.base_url", "https://api.stability.ai?key=topsecret"),
            ("stability.base_url", "api.stability.ai"),
            ("stability.base_url", "file:///etc/passwd"),
        ] {
            let variable = "AFTERIMAGE_" + key.uppercased().replacingOccurrences(of: ".", with: "_")
            do {
                _ = try await SettingsLoader.load(configFile: nil, environment: [variable: value])
                Issue.record("\(key) = \(value) was accepted")
            } catch {
                #expect(error.key == key, "\(value): \(error)")
                #expect(!error.description.contains("topsecret"))
            }
        }
        let good = try await SettingsLoader.load(
            configFile: nil,
            environment: [
                "AFTERIMAGE_STORAGE_ENDPOINT": "http://127.0.0.1:8333/", "AFTERIMAGE_STABILITY_BASE_URL": "http://127.0.0.1:9000/prefix",
            ])
        #expect(good.storage.endpoint == "http://127.0.0.1:8333/")
        #expect(good.stability.baseURL == "http://127.0.0.1:9000/prefix")
    }

    @Test func checkConfigMasksUserinfoWhateverTheKey() async throws {
        // No key is meant to hold a URL with a credential, but none may print one either.
        let settings = try await SettingsLoader.load(
            configFile: nil,
            environment: [
                "AFTERIMAGE_WORKERS_SPOOL_DIR": "/var/lib/https://spooluser:spoolsecret@x/spool"
            ])
        let text = settings.redactedDescription()
        #expect(!text.contains("spoolsecret"))
        #expect(text.contains("workers.spool_dir = \"/var/lib/https://***@x/spool\""))
    }

    @Test func terminalTextEscapesControlCharacters() {
        #expect(TerminalText.escaped("plain-id_1.png") == "plain-id_1.png")
        #expect(TerminalText.escaped("a\tb\nc\rd\\e") == "a\\tb\\nc\\rd\\\\e")
        #expect(TerminalText.escaped("\u{1B}[31mred\u{07}") == "\\u{1B}[31mred\\u{7}")
        #expect(TerminalText.escaped("c1\u{85}\u{9B}x") == "c1\\u{85}\\u{9B}x")
        #expect(TerminalText.escaped("bidi\u{202E}txt.exe\u{2028}") == "bidi\\u{202E}txt.exe\\u{2028}")
        #expect(TerminalText.escaped("añ€ 🌅") == "añ€ 🌅")
        let escaped = TerminalText.escaped("x\u{0}\u{7F}y")
        #expect(!escaped.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F })
    }

    @Test func anETagConfirmsTheUploadOnlyWhenItIsTheMD5Sent() {
        let md5: [UInt8] = [0x4b, 0x98, 0x14, 0x67, 0x05, 0xd4, 0xb0, 0xb9, 0x8b, 0x75, 0x8a, 0x78, 0xff, 0x6f, 0xb7, 0x3f]
        #expect(Archiver.etag("\"4b98146705d4b0b98b758a78ff6fb73f\"", isMD5: md5))
        #expect(Archiver.etag("4B98146705D4B0B98B758A78FF6FB73F", isMD5: md5))
        #expect(!Archiver.etag("\"4b98146705d4b0b98b758a78ff6fb73e\"", isMD5: md5))
        #expect(!Archiver.etag("\"4b98146705d4b0b98b758a78ff6fb73f-2\"", isMD5: md5), "a multipart ETag")
        #expect(!Archiver.etag("", isMD5: md5))
        #expect(!Archiver.etag("\"\"", isMD5: []))
    }

    /// A download's MD5, which the PUT sends as `Content-MD5`, is taken for files up to the limit only
    /// (a larger file costs no hashing; its upload is checked with a HEAD), and only inside the spool.
    @Test func theSpoolGivesTheMD5OfSmallFilesOnly() throws {
        let spool = try Spool(directory: NSTemporaryDirectory() + "afterimage-md5-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(atPath: spool.directory) }
        let bytes = Array("The quick brown fox jumps over the lazy dog".utf8)
        let writer = try spool.writer(assetID: 1, claim: UUID())
        try bytes.withUnsafeBytes { try writer.write($0) }
        let (path, _) = try writer.finish(durable: false)
        let size = Int64(bytes.count)
        #expect(spool.md5(ofFile: path, size: size, limit: size).map { Hex.encode($0) } == "9e107d9d372bb6826bd81d3542a419d6")
        #expect(spool.md5(ofFile: path, size: size, limit: size - 1) == nil)
        #expect(spool.md5(ofFile: path, size: size - 1, limit: size) == nil, "a file that is not the recorded size")
        #expect(spool.md5(ofFile: spool.directory + "/../elsewhere", size: 1, limit: size) == nil)
        spool.remove(path)
    }

    @Test func sourceURLMetadataDropsTheQueryAndStaysUnderTheLimit() {
        #expect(Archiver.metadataSourceURL("https://replicate.delivery/x/out-0.png") == "https://replicate.delivery/x/out-0.png")
        #expect(Archiver.metadataSourceURL("https://h.example/a.png?X-Amz-Signature=abc&t=1#frag") == "https://h.example/a.png")
        let longPath = "https://h.example/" + String(repeating: "é/segment-", count: 400) + "end.png?sig=" + String(repeating: "s", count: 8000)
        let value = Archiver.metadataSourceURL(longPath)
        #expect(value.utf8.count <= Archiver.maxSourceURLMetadataBytes)
        #expect(value.hasSuffix(Archiver.truncationMarker))
        #expect(!value.contains("sig="))
        #expect(value.utf8.allSatisfy { $0 >= 0x21 && $0 <= 0x7E })
        // Never a cut escape: every % is followed by two hex digits.
        let bytes = Array(value.utf8)
        for (index, byte) in bytes.enumerated() where byte == UInt8(ascii: "%") {
            #expect(
                index + 2 < bytes.count && bytes[(index + 1)...(index + 2)].allSatisfy { UInt8(ascii: "0")...UInt8(ascii: "F") ~= $0 },
                "cut escape at \(index)")
        }
        // Both S3 metadata entries together stay under S3's 2 KiB.
        #expect("sha256".utf8.count + 64 + "source-url".utf8.count + value.utf8.count <= 2048)
    }

    @Test func spoolPathsFromTheDatabaseAreNormalisedBeforeTheyAreTrusted() throws {
        let root = NSTemporaryDirectory() + "afterimage-resolve-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let spool = try Spool(directory: root + "/./a/../spool/")
        #expect(spool.directory == Spool.normalised(root) + "/spool")
        let d = spool.directory
        #expect(spool.resolve("\(d)/asset-1.spool") == "\(d)/asset-1.spool")
        #expect(spool.resolve("\(d)//./asset-1.spool") == "\(d)/asset-1.spool")
        #expect(spool.resolve("\(d)/../spool/asset-1.spool") == "\(d)/asset-1.spool")
        for outside in [
            "\(d)/../../etc/passwd", "\(d)/../x.spool", "\(d)/sub/asset.spool", "\(d)", "\(d)/", "\(d)/..",
            "relative/asset-1.spool", "\(d)x/asset-1.spool",
        ] {
            #expect(spool.resolve(outside) == nil, "\(outside)")
        }
        // A file outside the spool is never taken for an intact spool file, even with the right size and hash.
        let outsidePath = root + "/secret"
        try Data("not yours".utf8).write(to: URL(fileURLWithPath: outsidePath))
        let sha = try SHA256Hasher.hexDigest(ofFile: outsidePath, length: 9)
        #expect(!spool.isIntact(path: "\(d)/../secret", size: 9, sha256: sha))
        spool.remove("\(d)/../secret")
        #expect(FileManager.default.fileExists(atPath: outsidePath))
    }

    @Test func partFilesAreNamedPerClaimAndNeverOpenAnExistingPathOrSymlink() throws {
        let spool = try Spool(directory: NSTemporaryDirectory() + "afterimage-parts-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(atPath: spool.directory) }
        let claimA = UUID()
        let claimB = UUID()
        let a = try spool.writer(assetID: 7, claim: claimA)
        let b = try spool.writer(assetID: 7, claim: claimB)
        #expect(a.path != b.path)
        #expect(a.path.contains(claimA.uuidString.lowercased()) && a.path.hasSuffix(".\(getpid()).part"))
        #expect(SpoolClaims.shared.isClaimed(a.path) && SpoolClaims.shared.isClaimed(spool.finalPath(assetID: 7)))
        a.discard()
        b.discard()
        #expect(!SpoolClaims.shared.isClaimed(spool.finalPath(assetID: 7)))

        // A symlink planted where a part goes is not followed; an existing file is not reopened.
        let target = spool.directory + "-target"
        FileManager.default.createFile(atPath: target, contents: Data("keep".utf8))
        defer { try? FileManager.default.removeItem(atPath: target) }
        let planted = spool.partPath(assetID: 8, claim: claimA)
        try FileManager.default.createSymbolicLink(atPath: planted, withDestinationPath: target)
        #expect(throws: ArchiveError.self) { try spool.writer(assetID: 8, claim: claimA) }
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "keep")
        #expect(!SpoolClaims.shared.isClaimed(planted))
        let existing = spool.partPath(assetID: 9, claim: claimB)
        FileManager.default.createFile(atPath: existing, contents: Data("other writer".utf8))
        #expect(throws: ArchiveError.self) { try spool.writer(assetID: 9, claim: claimB) }
        #expect(try String(contentsOfFile: existing, encoding: .utf8) == "other writer")
    }
}

/// The streamed Stability intake reads a body through a `JSONSkeleton`: what it finds, and the bytes it
/// decodes, must be exactly what parsing the whole body finds, for every piece size.
@Suite("JSON skeleton: the streamed parse equals the whole-body parse")
struct JSONSkeletonTests {
    struct Found: Equatable {
        var pointers: [String], kinds: [String?], seeds: [Int64?], reasons: [String?], generation: String?, prediction: String?, decoded: [[UInt8]]
    }

    /// What the old path finds: parse and decode over the whole body in memory.
    func wholeBody(_ body: [UInt8]) -> Result<Found, StabilityBody.ParseError> {
        body.withUnsafeBufferPointer { bytes in
            do {
                let parsed = try StabilityBody.parse(bytes)
                let decoded = try parsed.artifacts.map { artifact -> [UInt8] in
                    var out: [UInt8] = []
                    let decoder = Base64StreamDecoder { out.append(contentsOf: $0) }
                    try JSONByteScanner(bytes).forEachUnescapedRun(artifact.base64) { try decoder.decode($0) }
                    try decoder.finish()
                    return out
                }
                return .success(Found(parsed, decoded))
            } catch let error as StabilityBody.ParseError {
                return .failure(error)
            } catch {
                return .failure(.init(message: "decode: \(error)"))
            }
        }
    }

    /// What the streamed path finds, reading the body `pieceSize` bytes at a time.
    func streamed(_ body: [UInt8], pieceSize: Int) -> Result<Found, StabilityBody.ParseError> {
        do {
            let source = DeliveryBody.bytes(body)
            let skeleton = try JSONSkeleton(reading: source, pieceSize: pieceSize)
            #expect(skeleton.bytes.count <= max(body.count, 4096) + 1024)
            let parsed = try skeleton.bytes.withUnsafeBufferPointer { try StabilityBody.parse($0) }
            let decoded = try parsed.artifacts.map { artifact -> [UInt8] in
                var out: [UInt8] = []
                let decoder = Base64StreamDecoder { out.append(contentsOf: $0) }
                switch skeleton.locate(artifact.base64) {
                case .inSkeleton(let span):
                    try skeleton.bytes.withUnsafeBufferPointer { try JSONByteScanner($0).forEachUnescapedRun(span) { try decoder.decode($0) } }
                case .inBody(let elision):
                    try elision.forEachUnescapedRun(in: source, pieceSize: pieceSize) { try decoder.decode($0) }
                }
                try decoder.finish()
                return out
            }
            return .success(Found(parsed, decoded))
        } catch let error as StabilityBody.ParseError {
            return .failure(error)
        } catch let error as JSONSkeleton.Failure {
            return .failure(.init(message: "skeleton: \(error)"))
        } catch {
            return .failure(.init(message: "decode: \(error)"))
        }
    }

    static func bodies() throws -> [(String, [UInt8])] {
        var bodies: [(String, [UInt8])] = []
        for name in [
            "v1-artifacts.json", "v2beta-image.json", "async-reference.json", "audio-answer.json", "audio-reference.json",
            "results-answer.json", "results-in-progress.json",
        ] {
            bodies.append((name, Array(try Data(contentsOf: TestEnvironment.fixturesDirectory.appendingPathComponent("stability/\(name)")))))
        }
        let raw = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8) }
        let base64 = Data(raw).base64EncodedString()
        // JSON encoders that escape "/" write base64 with `\/`; a MIME encoder breaks lines (`\n` escapes).
        let slashes = base64.replacingOccurrences(of: "/", with: "\\/")
        let lines = stride(from: 0, to: base64.count, by: 76).map { i in
            String(base64[base64.index(base64.startIndex, offsetBy: i)..<base64.index(base64.startIndex, offsetBy: min(base64.count, i + 76))])
        }.joined(separator: "\\n")
        let unicode = base64.replacingOccurrences(of: "A", with: "\\u0041")
        for (name, text) in [("plain", base64), ("slashes", slashes), ("lines", lines), ("unicode", unicode)] {
            bodies.append(("v2beta-\(name)", Array(#"{"image": "\#(text)", "seed": 3, "finish_reason": "SUCCESS", "prediction_id": "p-1"}"#.utf8)))
            bodies.append(
                (
                    "v1-\(name)",
                    Array(
                        #"{"artifacts": [{"base64": "\#(text)", "seed": "12", "finishReason": "SUCCESS"}, {"finishReason": "ERROR"}, {"base64": "QUJD", "seed": null}], "extra": {"long": "\#(String(repeating: "x", count: 5000))", "n": [1, 2.5e3, true, null]}}"#
                            .utf8)
                ))
        }
        let long = String(repeating: "é", count: 2000)
        bodies += [
            ("long unknown key", Array(#"{"\#(long)": 1, "id": "gen-1"}"#.utf8)),
            ("long id", Array(#"{"id": "\#(String(repeating: "a", count: 3000))"}"#.utf8)),
            ("long prediction id", Array(#"{"image": "QUJD", "prediction_id": "\#(String(repeating: "p", count: 2000))"}"#.utf8)),
            ("long seed string", Array(#"{"image": "QUJD", "seed": "\#(String(repeating: "1", count: 2000))"}"#.utf8)),
            ("long kind", Array(#"{"id": "g", "kind": "\#(String(repeating: "k", count: 2000))"}"#.utf8)),
            ("surrogates in a long string", Array(#"{"id": "g", "note": "\#(String(repeating: "\\ud83c\\udf05", count: 300))"}"#.utf8)),
            ("unpaired surrogate in a long string", Array(#"{"id": "g", "note": "\#(String(repeating: "ab", count: 600))\ud83c x"}"#.utf8)),
            ("bad escape in a long string", Array(#"{"id": "g", "note": "\#(String(repeating: "ab", count: 600))\q"}"#.utf8)),
            ("control character in a long string", Array("{\"id\": \"g\", \"note\": \"\(String(repeating: "ab", count: 600))\u{01}\"}".utf8)),
            ("unterminated long string", Array(#"{"image": "\#(base64)"#.utf8)),
            ("invalid base64 in a long string", Array(#"{"image": "\#(String(repeating: "QUJD", count: 500))*"}"#.utf8)),
            ("not an object", Array(#"["\#(base64)"]"#.utf8)),
            ("trailing bytes", Array(#"{"image": "\#(base64)"} x"#.utf8)),
            ("both forms", Array(#"{"image": "\#(base64)", "artifacts": [{"base64": "QUJD"}]}"#.utf8)),
            ("empty", []),
        ]
        return bodies
    }

    @Test func everyBodyParsesAndDecodesTheSameForEveryPieceSize() throws {
        for (name, body) in try Self.bodies() {
            let expected = wholeBody(body)
            for pieceSize in [1, 2, 5, 7, 64, 4096, 256 << 10] where pieceSize > 1 || body.count < 20_000 {
                let got = streamed(body, pieceSize: pieceSize)
                switch (expected, got) {
                case (.success(let a), .success(let b)):
                    #expect(a == b, "\(name), pieces of \(pieceSize)")
                case (.failure, .failure):
                    break  // both refuse (the messages may place the error differently)
                default:
                    Issue.record("\(name), pieces of \(pieceSize): whole body \(expected), streamed \(got)")
                }
            }
        }
    }

    @Test func longStringsStayInTheBodyAndTheSkeletonIsBounded() throws {
        let base64 = Data((0..<600_000).map { UInt8(truncatingIfNeeded: $0) }).base64EncodedString()
        let body = Array(#"{"video": "\#(base64)", "seed": 1}"#.utf8)
        let skeleton = try JSONSkeleton(reading: .bytes(body))
        #expect(skeleton.bytes.count < 400)
        #expect(skeleton.elided.count == 1)
        // Structure alone past the bound is refused, not held.
        let structure = Array(("{\"a\": [" + String(repeating: "1,", count: 600_000) + "1]}").utf8)
        #expect(throws: JSONSkeleton.Failure.self) { try JSONSkeleton(reading: .bytes(structure)) }
    }
}

extension JSONSkeletonTests.Found {
    init(_ parsed: StabilityBody, _ decoded: [[UInt8]]) {
        self.init(
            pointers: parsed.artifacts.map(\.pointer), kinds: parsed.artifacts.map(\.kind), seeds: parsed.artifacts.map(\.seed),
            reasons: parsed.artifacts.map(\.finishReason), generation: parsed.generationID, prediction: parsed.predictionID,
            decoded: decoded)
    }
}
