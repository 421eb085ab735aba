import S3

extension Settings.Storage {
    /// The S3 client for these settings: the one place the daemon and the commands build it, so both
    /// refuse a missing key the same way (a configuration error naming it, exit 78).
    public func makeClient() throws -> S3Client {
        for (key, value) in [
            ("storage.endpoint", endpoint), ("storage.bucket", bucket),
            ("storage.access_key_id", accessKeyID), ("storage.secret_access_key", secretAccessKey),
        ] {
            guard let value, !value.isEmpty else { throw ConfigurationError(key: key, "is required") }
        }
        let s3Endpoint = try S3Endpoint(
            endpoint: endpoint ?? "", region: region, bucket: bucket ?? "",
            pathStyle: pathStyle, prefix: prefix)
        let credentials = S3Credentials(accessKeyID: accessKeyID ?? "", secretAccessKey: secretAccessKey ?? "", sessionToken: nil)
        return S3Client(endpoint: s3Endpoint, credentials: credentials)
    }
}
