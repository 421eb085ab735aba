import Afterimage
import Crypto
import Foundation
import Glibc
import TestSupport
import Testing

/// The first ten minutes, as the README tells them, from a clone under a private (0700) home directory:
/// `make run` makes the local credentials and serves, `make demo` archives a PNG and prints a presigned
/// URL that curl fetches, the README's lookup examples (curl, Python) and Stability forwarding example
/// (Python, with the real `standardwebhooks` library) work against that daemon, `make demo` says so
/// clearly when the daemon is down, and `afterimage replicate secret` against a fake Replicate API puts the
/// account's secret where the next `make run` serves with it.
@Suite("First run: make run, make demo, the README's examples", .serialized)
struct FirstRunTests {
    @Test("from a clone under a 0700 home: make run, make demo, lookups, Stability forwarding, replicate secret")
    func firstRun() throws {
        let clone = try PrivateClone()
        defer { clone.destroy() }
        // Every Replicate API call goes to the fake, never out of the machine (make run reconciles once a
        // token is configured).
        let replicate = try FakeReplicateAPI()
        try replicate.load([])
        clone.extraEnvironment = ["AFTERIMAGE_REPLICATE_BASE_URL": replicate.baseURL]
        let binary = try TestEnvironment.afterimageBinary()

        // Before anything runs, `make demo` says what to do.
        let (early, earlyOutput) = try clone.make("demo")
        #expect(early != 0)
        #expect(earlyOutput.contains("make run"), "\(earlyOutput)")

        // 1. make run: credentials made, kept 0600 and put in the generated configuration.
        try clone.startRun()
        let token = try clone.credential("api-tokens")
        let replicateSecret = try clone.credential("replicate-webhook_secret")
        let stabilitySecret = try clone.credential("stability-webhook_secret")
        #expect(token.hasPrefix("tok_") && token.count == 52 && token.dropFirst(4).allSatisfy(\.isHexDigit))
        for secret in [replicateSecret, stabilitySecret] {
            #expect(secret.hasPrefix("whsec_") && Data(base64Encoded: String(secret.dropFirst(6)))?.count == 32)
        }
        #expect(replicateSecret != stabilitySecret)
        for name in ["api-tokens", "replicate-webhook_secret", "stability-webhook_secret"] {
            #expect(try clone.mode(clone.credentials + "/" + name) == 0o600, "\(name)")
        }
        #expect(try clone.mode(clone.credentials) == 0o700)
        #expect(try clone.mode(clone.localDirectory + "/config.json") == 0o600)
        let config = try clone.config()
        #expect(config["api"]?["tokens"] as? String == token)
        #expect(config["replicate"]?["webhook_secret"] as? String == replicateSecret)
        #expect(config["stability"]?["webhook_secret"] as? String == stabilitySecret)
        // Printed once, with where they live.
        let firstLog = clone.runLog
        #expect(firstLog.contains("made local credentials"))
        for value in [token, replicateSecret, stabilitySecret] { #expect(firstLog.contains(value)) }
        #expect(firstLog.contains(".local/credentials/api-tokens"))

        // The clone's home stays private; as root the cluster lives where `postgres` can reach it.
        #expect(try clone.mode(clone.home) == 0o700)
        let pgPath = clone.localDirectory + "/pg"
        if getuid() == 0 {
            let target = try FileManager.default.destinationOfSymbolicLink(atPath: pgPath)
            #expect(target.hasPrefix(clone.relocated + "/"), "\(target)")
            #expect(FileManager.default.fileExists(atPath: target + "/data/PG_VERSION"))
        } else {
            #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: pgPath)) == nil)
            #expect(FileManager.default.fileExists(atPath: pgPath + "/data/PG_VERSION"))
        }

        // 2. make demo: a signed webhook, the output stored, the lookup and a presigned URL curl fetches.
        let (demo, demoOutput) = try clone.make("demo")
        #expect(demo == 0, "\(demoOutput)\nmake run:\n\(clone.runLog)")
        let predictionID = try #require(Self.predictionID(in: demoOutput), "\(demoOutput)")
        #expect(demoOutput.contains("\"state\" : \"stored\""), "\(demoOutput)")
        let curlLine = try #require(
            demoOutput.components(separatedBy: "\n").first { $0.hasPrefix("  curl -o afterimage-demo.png ") },
            "\(demoOutput)")
        let (curled, curlOutput) = try clone.shell(curlLine)
        #expect(curled == 0, "\(curlOutput)")
        let fetched = try Data(contentsOf: URL(fileURLWithPath: clone.root + "/afterimage-demo.png"))
        #expect(Array(fetched) == DemoPrediction.png)
        #expect(!demoOutput.contains(replicateSecret) && !demoOutput.contains(token))
        if FirstRunHTTP.consoleExists(clone.baseURL) {
            #expect(demoOutput.contains("\(clone.baseURL)/ui/"))
        } else {
            #expect(!demoOutput.contains("/ui/"))
        }

        // 3. Look up an output: the README's curl and Python examples, as written.
        let curlLookup = try ReadmeSnippet.block("lookup-curl")
            .replacingOccurrences(of: "127.0.0.1:8080", with: "127.0.0.1:\(clone.httpPort)")
            .replacingOccurrences(of: "PREDICTION_ID", with: predictionID)
        let (looked, lookupOutput) = try clone.shell(curlLookup)
        #expect(looked == 0)
        let lookup = try JSONSerialization.jsonObject(with: Data(lookupOutput.utf8)) as? [String: Any]
        #expect(lookup?["id"] as? String == predictionID, "\(lookupOutput)")
        try ReadmeSnippet.block("lookup-python").write(toFile: clone.root + "/afterimage_lookup.py", atomically: true, encoding: .utf8)
        let pythonRun = try ReadmeSnippet.block("lookup-python-run").replacingOccurrences(of: "PREDICTION_ID", with: predictionID)
        let (pythonStatus, pythonOutput) = try clone.shell(pythonRun, environment: ["AFTERIMAGE_URL": clone.baseURL])
        #expect(pythonStatus == 0, "\(pythonOutput)")
        let presigned = pythonOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try FirstRunHTTP.get(presigned).body == DemoPrediction.png, "\(pythonOutput)")

        // 4. Stability forwarding: the README's Python example, with the real standardwebhooks library.
        try ReadmeSnippet.block("stability-forward-python").write(toFile: clone.root + "/forward.py", atomically: true, encoding: .utf8)
        let stabilityID = "firstrun-" + UUID().uuidString.prefix(8).lowercased()
        let answer = #"{"image": "\#(Data(DemoPrediction.png).base64EncodedString())", "finish_reason": "SUCCESS", "seed": 42}"#
        let (forwarded, forwardOutput) = try clone.execute(
            clone.root + "/.venv/bin/python",
            [
                "-c", "import json, sys, forward; print(json.dumps(forward.forward_to_afterimage(json.loads(sys.argv[1]), sys.argv[2])))",
                answer, stabilityID,
            ], environment: ["AFTERIMAGE_URL": clone.baseURL, "AFTERIMAGE_STABILITY_SECRET": stabilitySecret])
        #expect(forwarded == 0, "\(forwardOutput)")
        #expect(forwardOutput.contains("\"accepted\""), "\(forwardOutput)")
        try waitUntil(timeout: .seconds(30), pollEvery: .milliseconds(100), "the forwarded Stability image to be stored") {
            let response = try FirstRunHTTP.get(
                "\(clone.baseURL)/v1/predictions/stability/\(stabilityID)",
                headers: [("Authorization", "Bearer \(token)")])
            let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
            return (object?["assets"] as? [[String: Any]])?.first?["state"] as? String == "stored"
        }

        // ... and the JavaScript example, run by Node. npm's registry is out of reach here, so `standardwebhooks`
        // is a stand-in with the library's `Webhook` constructor and `sign(msgId, date, payload)`, written from its
        // source (HMAC-SHA256 of `{id}.{seconds}.{payload}`, base64, keyed by the secret after `whsec_`); the
        // daemon checks the signature it makes.
        try ReadmeSnippet.block("stability-forward-js").write(toFile: clone.root + "/forward.mjs", atomically: true, encoding: .utf8)
        let standIn = clone.root + "/node_modules/standardwebhooks"
        try FileManager.default.createDirectory(atPath: standIn, withIntermediateDirectories: true)
        try #"{"name": "standardwebhooks", "type": "module", "main": "index.js"}"#.write(
            toFile: standIn + "/package.json", atomically: true, encoding: .utf8)
        try """
        import { createHmac } from "node:crypto";
        export class Webhook {
          constructor(secret) { this.key = Buffer.from(secret.startsWith("whsec_") ? secret.slice(6) : secret, "base64"); }
          sign(msgId, timestamp, payload) {
            const seconds = Math.floor(timestamp.getTime() / 1000);
            return `v1,${createHmac("sha256", this.key).update(`${msgId}.${seconds}.${payload}`).digest("base64")}`;
          }
        }
        """.write(toFile: standIn + "/index.js", atomically: true, encoding: .utf8)
        let javascriptID = "firstrun-js-" + UUID().uuidString.prefix(8).lowercased()
        let (node, nodeOutput) = try clone.execute(
            "/usr/bin/env",
            [
                "node", "--input-type=module", "-e",
                "import { forwardToAfterimage } from './forward.mjs'; console.log(JSON.stringify(await forwardToAfterimage(JSON.parse(process.argv[1]), process.argv[2])));",
                answer, javascriptID,
            ], environment: ["AFTERIMAGE_URL": clone.baseURL, "AFTERIMAGE_STABILITY_SECRET": stabilitySecret])
        #expect(node == 0, "\(nodeOutput)")
        #expect(nodeOutput.contains("\"accepted\""), "\(nodeOutput)")

        // 5. Stopped, `make demo` says the daemon is not running and how to start it.
        try clone.stopRun()
        #expect(!FileManager.default.fileExists(atPath: clone.localDirectory + "/pg/data/postmaster.pid"))
        #expect(!FileManager.default.fileExists(atPath: clone.localDirectory + "/s3/weed.pid"))
        let (down, downOutput) = try clone.make("demo")
        #expect(down != 0)
        #expect(downOutput.contains("no daemon answers on \(clone.baseURL)") && downOutput.contains("make run"), "\(downOutput)")

        // 6. Connect Replicate: the README's commands fetch the account's secret from (the fake) Replicate ...
        let secretCommands = try ReadmeSnippet.block("replicate-secret-local")
            .replacingOccurrences(of: "r8_…", with: replicate.token)
            .replacingOccurrences(of: ".build/release/afterimage", with: binary)
        let (fetchedSecret, secretOutput) = try clone.shell(secretCommands)
        #expect(fetchedSecret == 0, "\(secretOutput)")
        #expect(try clone.credential("replicate-webhook_secret") == replicate.webhookSecret)
        #expect(!secretOutput.contains(replicate.webhookSecret) && !secretOutput.contains(replicate.token))
        #expect(try replicate.stats().secret == 1)

        // ... and the next make run serves with it, reusing everything else without printing it again.
        try clone.startRun()
        let second = try clone.config()
        #expect(second["replicate"]?["webhook_secret"] as? String == replicate.webhookSecret)
        #expect(second["replicate"]?["api_token"] as? String == replicate.token)
        #expect(try clone.credential("api-tokens") == token)
        #expect(clone.runLog.contains("local credentials reused"))
        #expect(!clone.runLog.contains(token) && !clone.runLog.contains(replicate.webhookSecret))
        let kept = try FirstRunHTTP.get("\(clone.baseURL)/v1/predictions/replicate/\(predictionID)", headers: [("Authorization", "Bearer \(token)")])
        #expect(kept.status == 200)
        let (again, againOutput) = try clone.make("demo")
        #expect(again == 0, "\(againOutput)\nmake run:\n\(clone.runLog)")
        try clone.stopRun()
    }

    /// The prediction id from the demo's "GET …/v1/predictions/replicate/ID:" line.
    static func predictionID(in output: String) -> String? {
        guard let range = output.range(of: "/v1/predictions/replicate/") else { return nil }
        let id = output[range.upperBound...].prefix { $0.isLetter || $0.isNumber }
        return id.isEmpty ? nil : String(id)
    }
}

extension PrivateClone {
    func make(_ target: String) throws -> (Int32, String) { try execute("/usr/bin/make", [target]) }

    func credential(_ name: String) throws -> String {
        try String(contentsOfFile: credentials + "/" + name, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func mode(_ path: String) throws -> Int {
        try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int ?? -1
    }

    func config() throws -> [String: [String: Any]] {
        let data = try Data(contentsOf: URL(fileURLWithPath: localDirectory + "/config.json"))
        return try JSONSerialization.jsonObject(with: data) as? [String: [String: Any]] ?? [:]
    }
}

extension FirstRunHTTP {
    /// Whether this build serves a console (`GET /ui/` answers 200).
    static func consoleExists(_ baseURL: String) -> Bool { (try? get(baseURL + "/ui/"))?.status == 200 }
}

/// `afterimage demo`'s refusals, which need no daemon.
@Suite("afterimage demo without a daemon")
struct DemoCommandTests {
    static let secret = "whsec_" + Data(repeating: 1, count: 32).base64EncodedString()

    @Test("nothing listening: exit 1, saying the daemon is not running and how to start it")
    func notRunning() throws {
        let port = freePort()
        let (status, out, err) = try runAfterimage(
            ["demo"],
            environment: [
                "AFTERIMAGE_HTTP_PORT": String(port), "AFTERIMAGE_REPLICATE_WEBHOOK_SECRET": Self.secret, "AFTERIMAGE_API_TOKENS": "demo-token",
            ])
        #expect(status == 1)
        #expect(err.contains("no daemon answers on http://127.0.0.1:\(port)") && err.contains("make run"), "\(err)")
        #expect(out.isEmpty)
        #expect(!err.contains(Self.secret) && !err.contains("demo-token"))
    }

    @Test("no webhook secret, or only hashed tokens: a configuration error naming the key")
    func missingKeys() throws {
        let (noSecret, _, secretErr) = try runAfterimage(["demo"], environment: ["AFTERIMAGE_API_TOKENS": "demo-token"])
        #expect(noSecret == 78)
        #expect(secretErr.contains("replicate.webhook_secret"), "\(secretErr)")
        let hashed = "sha256:" + String(repeating: "ab", count: 32)
        let (noToken, _, tokenErr) = try runAfterimage(
            ["demo"],
            environment: [
                "AFTERIMAGE_REPLICATE_WEBHOOK_SECRET": Self.secret, "AFTERIMAGE_API_TOKENS": hashed,
            ])
        #expect(noToken == 78)
        #expect(tokenErr.contains("api.tokens"), "\(tokenErr)")
    }
}
