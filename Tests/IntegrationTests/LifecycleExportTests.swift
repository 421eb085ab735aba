import AfterimageTestSupport
import Foundation
import Glibc
import PQ
import TestSupport
import Testing

/// Issue 19, export: `afterimage export` over 100,000 predictions streams one JSON line each while its
/// memory stays flat.
@Suite("Lifecycle: export", .serialized)
struct LifecycleExportTests {
    static let count = 100_000

    /// 100k predictions with one stored output each (and every 10th with a second, failed one), written
    /// in one statement each.
    func seed(_ databaseURL: String) throws {
        let connection = try Connection.connect(url: databaseURL)
        defer { connection.close() }
        try connection.execute(
            """
            INSERT INTO predictions (provider, id, status, model, version, input, created_at, completed_at)
            SELECT CASE WHEN n % 4 = 0 THEN 'archive' ELSE 'replicate' END, 'exp' || lpad(n::text, 6, '0'), 'succeeded',
                   'test/model', 'v1', jsonb_build_object('prompt', repeat('a lighthouse at dusk ', 8), 'n', n),
                   timestamptz '2026-10-01T00:00:00Z' + n * interval '1 minute', timestamptz '2026-10-01T00:00:00Z' + n * interval '1 minute'
            FROM generate_series(1, \(Self.count)) AS n
            """)
        try connection.execute(
            """
            INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, state, storage_key, size_bytes, sha256,
                                content_type, stored_at)
            SELECT p.provider, p.id, '/0', 0, 'https://replicate.delivery/x/' || p.id || '.png', 'stored',
                   p.provider || '/' || p.id || '/0.png', 1000 + length(p.id), encode(sha256(p.id::bytea), 'hex'), 'image/png', now()
            FROM predictions p
            """)
        try connection.execute(
            """
            INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, state, failure_reason)
            SELECT p.provider, p.id, '/1', 1, 'https://replicate.delivery/x/' || p.id || '-1.png', 'failed', 'the source answered 404'
            FROM predictions p WHERE right(p.id, 1) = '0'
            """)
    }

    /// Runs `afterimage export ARGS`, reading its stdout as it comes and sampling its resident memory after
    /// every read. Returns the lines asked for by `keep` (by position), how many there were, how many
    /// distinct, the output's size, the exit status, stderr and the samples (lines read so far, RSS kB).
    struct Exported {
        var kept: [Int: String] = [:]
        var count = 0
        var distinct = Set<Int>()
        var bytes = 0
        var status: Int32 = 0
        var stderr = ""
        var rss: [(Int, Int)] = []
    }

    func export(_ arguments: [String], environment: [String: String], keep: (Int) -> Bool = { _ in true }) throws -> Exported {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try TestEnvironment.afterimageBinary())
        process.arguments = ["export"] + arguments
        process.environment = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"].merging(environment) { $1 }
        let out = Pipe()
        let errPath = NSTemporaryDirectory() + "afterimage-export-\(UUID().uuidString).err"
        FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: errPath) }
        process.standardOutput = out
        process.standardError = FileHandle(forWritingAtPath: errPath)
        try launchWithDefaultSignals(process)
        var result = Exported()
        var pending = Data()
        while let chunk = try out.fileHandleForReading.read(upToCount: 1 << 16), !chunk.isEmpty {
            pending.append(chunk)
            result.bytes += chunk.count
            while let newline = pending.firstIndex(of: 10) {
                let line = pending[pending.startIndex..<newline]
                result.distinct.insert(line.hashValue)
                if keep(result.count) { result.kept[result.count] = String(decoding: line, as: UTF8.self) }
                result.count += 1
                pending.removeSubrange(pending.startIndex...newline)
            }
            if let rss = Self.residentKilobytes(process.processIdentifier) { result.rss.append((result.count, rss)) }
        }
        process.waitUntilExit()
        result.status = process.terminationStatus
        result.stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        return result
    }

    static func residentKilobytes(_ pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return nil }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    }

    @Test("100k predictions: one JSON line each, in constant memory, with presigned URLs and filters")
    func hundredThousand() throws {
        let databaseURL = try TestEnvironment.migratedDatabase(prefix: "export")
        try seed(databaseURL)
        let harness = try ArchiveHarness(databaseURL: databaseURL)
        let environment = harness.environment(port: freePort())

        let spot = [0, Self.count / 2, Self.count - 1]
        let all = try export(["--presign", "600"], environment: environment, keep: { spot.contains($0) })
        #expect(all.status == 0, "\(all.stderr)")
        #expect(all.count == Self.count)
        #expect(all.stderr.contains("export: \(Self.count) predictions written"))
        // Every line is a prediction; spot-check the shape of a few.
        for line in spot.compactMap({ all.kept[$0] }) {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let outputs = try #require(object["outputs"] as? [[String: Any]])
            let first = try #require(outputs.first)
            #expect(first["state"] as? String == "stored")
            #expect((first["key"] as? String)?.hasSuffix("/0.png") == true)
            #expect((first["sha256"] as? String)?.count == 64)
            #expect(first["size"] is Int && first["content_type"] as? String == "image/png")
            #expect((first["url"] as? String)?.contains("X-Amz-Signature=") == true)
            #expect((object["input"] as? [String: Any])?["prompt"] != nil)
        }
        #expect(all.distinct.count == Self.count)
        // Flat memory: after the first tenth, resident memory grows by less than 16 MiB to the end (a
        // process that kept what it wrote would grow by the 60+ MB of output).
        let early = try #require(all.rss.first { $0.0 >= Self.count / 10 })
        let peak = all.rss.map(\.1).max() ?? 0
        #expect(peak - early.1 < 16 * 1024, "RSS grew from \(early.1) kB at \(early.0) lines to \(peak) kB")
        print("export of \(all.count) predictions (\(all.bytes) bytes): RSS \(early.1) kB at \(early.0) lines, peak \(peak) kB")
        #expect(all.bytes > 60 << 20, "the output is \(all.bytes) bytes; the memory check needs it large")

        let archive = try export(["--provider", "archive", "--since", "2026-10-01T00:00:00Z", "--until", "2026-10-02"], environment: environment)
        #expect(archive.status == 0, "\(archive.stderr)")
        // archive: every 4th n; created 1..1439 minutes after midnight on 2026-10-01.
        #expect(archive.count == 1439 / 4)
        #expect(archive.kept.values.allSatisfy { $0.contains("\"provider\":\"archive\"") && !$0.contains("X-Amz-Signature") })
    }
}
