import Foundation

extension ReplicateAPIClient {
    /// The account's webhook signing secret: `GET {replicate.base_url}/v1/webhooks/default/secret`, answered
    /// `{"key": "whsec_…"}` (Replicate signs every webhook it sends with it, the Standard Webhooks way).
    ///
    /// The same manners as the reconciler's requests (token only to `replicate.base_url`'s origin, no redirects,
    /// 429/5xx retried); errors name the endpoint and status, never the token or the answer's body, and the
    /// key is checked to be a usable `whsec_` secret before anyone writes it where the daemon reads it.
    public func defaultWebhookSecret() throws(ReconcileError) -> String {
        let what = "GET /v1/webhooks/default/secret"
        let response = try perform("\(origin.text)\(basePath)/v1/webhooks/default/secret", what: what, allowNotFound: false)
        guard let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
            let key = object["key"] as? String, !key.isEmpty
        else {
            throw ReconcileError(.invalidResponse, "\(what) answered \(response.status) without a key")
        }
        do {
            try SettingsLoader.validateWebhookSecrets([key], key: "replicate.webhook_secret")
        } catch {
            throw ReconcileError(.invalidResponse, "\(what) answered a key that is not whsec_ followed by base64 (the value is not shown)")
        }
        return key
    }
}
