import Foundation
import TestSupport
import Testing

@testable import Afterimage

/// Small downloads far from their deadline are uploaded from memory (`DownloadSink`), without a spool file
/// or a spool record; larger ones and those near their deadline are spooled and recorded first. What
/// happens when a held download's upload fails is in "Replicate: crashes, outages, several daemons"
/// (`storageOutageUploadsFromTheSpoolWithoutASecondDownload`: its 200 KB outputs are held, then spilled).
@Suite("Archive: small downloads held in memory")
struct HeldDownloadTests {
    @Test func onlySmallOutputsFarFromTheirDeadlineSkipTheSpool() throws {
        let harness = try ArchiveHarness()
        let daemon = try harness.startDaemon()
        let far = "held\(UUID().uuidString.prefix(6).lowercased())"
        let near = "near\(UUID().uuidString.prefix(6).lowercased())"
        // Replicate's deadline is completed_at + 1 h: an hour away for `far`, 5 minutes for `near`
        // (under the ten minutes a held download needs).
        let outputs: [(prediction: String, name: String, size: Int, spooled: Bool)] = [
            (far, "\(far)-0.png", 200_000, false),
            (far, "\(far)-1.png", 1_500_000, true),
            (near, "\(near)-0.png", 200_000, true),
        ]
        let farBody = harness.prediction(id: far, output: outputs.prefix(2).map { harness.fake.url($0.name, "size=\($0.size)&type=image/png") })
        let nearBody = harness.prediction(
            id: near, output: [harness.fake.url(outputs[2].name, "size=200000&type=image/png")],
            completedAt: Date().addingTimeInterval(-55 * 60))
        #expect(try harness.post(farBody, to: daemon).status == 200)
        #expect(try harness.post(nearBody, to: daemon).status == 200)
        try harness.waitForAssets("stored", count: 3)

        let storage = try harness.storage()
        for (index, output) in outputs.enumerated() {
            let outputIndex = output.prediction == far ? index : 0
            let found = try harness.connection().query(
                "SELECT storage_key, spool_sha256 FROM assets WHERE prediction_id = $1 AND output_index = $2",
                [output.prediction, outputIndex]
            ).first
            let row = try #require(found)
            let key = try #require(try row.decode(0, as: String?.self))
            let spoolSHA256 = try row.decode(1, as: String?.self)
            let expected = FakeProvider.bytes(output.name, size: output.size)
            if output.spooled {
                #expect(spoolSHA256 == FakeProvider.sha256Hex(expected), "\(output.name) should have been spooled and recorded")
            } else {
                #expect(spoolSHA256 == nil, "\(output.name) went through the spool")
            }
            var object = [UInt8]()
            _ = try storage.getObject(key: key) { object.append(contentsOf: $0) }
            #expect(object == expected, "\(output.name): stored bytes differ from the source")
            #expect(try harness.fake.count(output.name) == 1)
        }
        try waitUntil(timeout: .seconds(10), "spool files removed once stored") {
            try FileManager.default.contentsOfDirectory(atPath: harness.spoolDirectory).filter { $0.hasPrefix("asset-") }.isEmpty
        }
        #expect(try daemon.stop() == 0)
    }
}
