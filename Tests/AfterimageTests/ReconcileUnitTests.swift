import Foundation
import Testing

@testable import Afterimage

@Suite("Reconciliation: the parts without a network")
struct ReconcileUnitTests {
    @Test func durationsAsTyped() {
        #expect(DurationText.seconds("90s") == 90)
        #expect(DurationText.seconds("45m") == 2700)
        #expect(DurationText.seconds("2h") == 7200)
        #expect(DurationText.seconds("1d") == 86400)
        #expect(DurationText.seconds("1h30m") == 5400)
        #expect(DurationText.seconds("3600") == 3600)
        for bad in ["", "0", "-5", "2x", "h", "2h3", "400d", "99999999999999999999"] {
            #expect(DurationText.seconds(bad) == nil, "\(bad)")
        }
    }

    @Test func retryAfterInSecondsOrAsADate() {
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        #expect(ReplicateAPIClient.retryAfter("7", now: now) == 7)
        #expect(ReplicateAPIClient.retryAfter(" 0 ", now: now) == 0)
        // 1_700_000_030 is Tue, 14 Nov 2023 22:13:50 GMT.
        #expect(ReplicateAPIClient.retryAfter("Tue, 14 Nov 2023 22:13:50 GMT", now: now) == 30)
        #expect(ReplicateAPIClient.retryAfter("soon", now: now) == nil)
        #expect(ReplicateAPIClient.retryAfter(nil, now: now) == nil)
    }

    @Test func deliveryIDsAreDeterministicPerStatus() {
        #expect(ReplicateReconciler.deliveryID(predictionID: "abc", status: "succeeded") == "reconcile:abc:succeeded")
        #expect(ReplicateReconciler.deliveryID(predictionID: "abc", status: "processing") == "reconcile:abc:processing")
        // Whatever the API invents, the key stays short and fixed.
        #expect(ReplicateReconciler.deliveryID(predictionID: "abc", status: String(repeating: "x", count: 500)) == "reconcile:abc:unknown")
        #expect(ReplicateReconciler.deliveryID(predictionID: "abc", status: nil) == "reconcile:abc:unknown")
    }

    @Test func originsCompareSchemeHostAndPort() {
        #expect(Origin("https://api.replicate.com") == Origin("https://API.replicate.com:443/v1/predictions?cursor=x"))
        #expect(Origin("https://api.replicate.com") != Origin("http://api.replicate.com"))
        #expect(Origin("https://api.replicate.com") != Origin("https://api.replicate.com.evil.example"))
        #expect(Origin("http://127.0.0.1:8000") != Origin("http://127.0.0.1:8001"))
        #expect(Origin("ftp://api.replicate.com") == nil)
        #expect(Origin("https://user:pw@api.replicate.com") == nil)
        #expect(Origin("not a url") == nil)
    }

    @Test func firstPageAsksForTheWindow() throws {
        let client = try ReplicateAPIClient(configuration: .init(baseURL: "https://api.replicate.com/", token: "t"), sleep: { _ in true })
        let url = client.firstPageURL(createdAfter: Date(timeIntervalSince1970: 1_700_000_000))
        #expect(url == "https://api.replicate.com:443/v1/predictions?created_after=2023-11-14T22:13:20Z")
    }

    @Test func settingsDefaultsAndLimits() async throws {
        let defaults = try await SettingsLoader.load(configFile: nil, environment: [:])
        #expect(defaults.replicate.reconcileInterval == 60)
        #expect(defaults.replicate.reconcileMargin == 600)
        #expect(defaults.replicate.reconcileStaleAfter == 900)
        let off = try await SettingsLoader.load(configFile: nil, environment: ["AFTERIMAGE_REPLICATE_RECONCILE_INTERVAL": "0"])
        #expect(off.replicate.reconcileInterval == 0)
        await #expect(throws: ConfigurationError.self) {
            _ = try await SettingsLoader.load(configFile: nil, environment: ["AFTERIMAGE_REPLICATE_BASE_URL": "ftp://api.replicate.com"])
        }
        await #expect(throws: ConfigurationError.self) {
            _ = try await SettingsLoader.load(configFile: nil, environment: ["AFTERIMAGE_REPLICATE_RECONCILE_INTERVAL": "-1"])
        }
    }

    @Test func theServiceIsOnWhenATokenIsSet() {
        var settings = Settings()
        #expect(!ReconcileService.isEnabled(settings))
        settings.replicate.apiToken = "r8_x"
        #expect(ReconcileService.isEnabled(settings))
        settings.replicate.reconcileInterval = 0
        #expect(!ReconcileService.isEnabled(settings))
    }
}
