import Crypto
import Foundation
import Primitives

/// The Replicate prediction `afterimage demo` sends: shaped like a real completed webhook (a 26-character
/// id, `version: "hidden"`, millisecond `created_at` and nanosecond `started_at`/`completed_at`, metrics),
/// whose one output is a small PNG as a `data:` URI, as Replicate's sync API returns outputs. The daemon
/// decodes such an output at intake, so the demo needs no file server and no loosened fetch policy.
public struct DemoPrediction: Sendable {
    /// A 48×48 PNG (a sun and its afterimage), 455 bytes.
    public static let png: [UInt8] = Array(Data(base64Encoded: pngBase64)!)

    private static let pngBase64 = """
        iVBORw0KGgoAAAANSUhEUgAAADAAAAAwCAIAAADYYG7QAAABjklEQVR42u3O30eDURzH8c9f0nV/ye6TyFrW+jFrWevHrGXNatayEklU\
        xkyZMhKRSJZIRCKRSEQiKZGIburhuXkuzvmec57npHPx8Lr+fN74bgSNgq+tLqPgsx4yCj42uo2C91rYKHir9hgFL5WIUfC83msUPK32\
        GwWPKwNGwcNy1Ci4X4op+Xlt8KhOMeFucVAeUWNTWmPC7UJchjDFSXKTCTflIRlKQZKbTLguJYSUamwys0y4Kg7TXNTYhMtMuCwkaa6D\
        hMtMuMiP0FwHCZeZcJ4bo7kOCjSbTsIjG86y4zRdQRbhlwWnmRRNY5CNvsNJOk3THkTf4Tg1QdMeZCHucDSaof1FkIV3h8PkpJD2Ggvv\
        CweJrAy9NRbeEfbjUzK0B/GOsBfLydOSYuNdYDeaV6KlxsLbx07ftBdKEU68QTQiM164DuINYjtc8MJ1EG8Q9VDRIxc1xBo2g7PeKdXQ\
        U6h1lrxTCqKnUO2Y00WYIjOCSntZI6JGcgFrbfNGQUtrwCh+kB/kB/lB/+0X9ta0DG8ZPmcAAAAASUVORK5CYII=
        """

    public let id: String
    public let webhookID: String
    public let body: [UInt8]

    /// A new prediction completed `now` (a fresh id and webhook id each time, so every demo is a new one).
    public init(now: Date = Date()) {
        id = Self.randomID()
        webhookID = "msg_" + Self.randomID()
        let created = now.addingTimeInterval(-2.4)
        let prediction: [String: Any] = [
            "id": id,
            "model": "afterimage/demo",
            "version": "hidden",
            "input": ["prompt": "a sun and its afterimage, 48 px"],
            "logs": "afterimage demo: no model ran; the output is a PNG made in advance\n",
            "output": ["data:image/png;base64," + Self.pngBase64],
            "data_removed": false,
            "error": NSNull(),
            "source": "api",
            "status": "succeeded",
            "created_at": created.rfc3339(fractionDigits: 3),
            "started_at": created.addingTimeInterval(0.01).rfc3339(fractionDigits: 9),
            "completed_at": now.rfc3339(fractionDigits: 9),
            "metrics": ["predict_time": 2.39, "total_time": 2.4],
        ]
        body = Array(try! JSONSerialization.data(withJSONObject: prediction, options: [.sortedKeys, .withoutEscapingSlashes]))
    }

    /// The three Standard Webhooks headers for `body`, signed with `secret` at `now`.
    public func headers(secret: String, now: Date = Date()) -> [(String, String)] {
        let timestamp = Int64(now.timeIntervalSince1970)
        return [
            ("Content-Type", "application/json"),
            ("webhook-id", webhookID),
            ("webhook-timestamp", String(timestamp)),
            ("webhook-signature", StandardWebhooksVerifier.sign(secret: secret, id: webhookID, timestamp: timestamp, body: body)),
        ]
    }

    /// Lower-case letters and digits, 26 of them, like Replicate's prediction ids.
    static func randomID() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<26).map { _ in alphabet.randomElement()! })
    }

    /// Lower-case hex SHA-256 of the PNG, to compare with what the daemon stored.
    public static var pngSHA256: String {
        Hex.encode(SHA256.hash(data: png))
    }
}
