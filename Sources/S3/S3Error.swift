import Curl

/// A failed S3 operation, as a value: what kind (`code`), the HTTP status and S3's own error code
/// when the server answered, and a message for people.
///
/// The message names the operation and key, never a secret, a signature or a presigned URL:
/// it is built from the method, the key, the status and the `<Code>`/`<Message>` of S3's XML
/// error body (not the whole body: SignatureDoesNotMatch bodies echo the string to sign).
public struct S3Error: Error, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        init(_ name: String) { self.name = name }
        public var description: String { name }

        public static let accessDenied = Code("accessDenied")
        public static let signatureDoesNotMatch = Code("signatureDoesNotMatch")
        public static let invalidAccessKeyID = Code("invalidAccessKeyID")
        public static let requestTimeTooSkewed = Code("requestTimeTooSkewed")
        public static let noSuchKey = Code("noSuchKey")
        public static let noSuchBucket = Code("noSuchBucket")
        public static let noSuchUpload = Code("noSuchUpload")
        public static let preconditionFailed = Code("preconditionFailed")
        /// The server computed another SHA-256 of the body than `x-amz-content-sha256` said.
        public static let contentSHA256Mismatch = Code("contentSHA256Mismatch")
        /// Multipart: a part other than the last is under 5 MiB.
        public static let entityTooSmall = Code("entityTooSmall")
        public static let invalidPart = Code("invalidPart")
        /// Any other non-2xx answer.
        public static func http(_ status: Int) -> Code { Code("http(\(status))") }
        /// The request did not get an answer (connect, TLS, timeout, reset, size limit…): see `underlying`.
        public static let transport = Code("transport")
        /// A streaming sink threw while receiving an object: its error is `underlying`.
        public static let sinkFailed = Code("sinkFailed")
        /// A 2xx answer we could not use (missing UploadId, unreadable body…).
        public static let invalidResponse = Code("invalidResponse")
        /// Endpoint, bucket, region or credentials are unusable as given.
        public static let invalidConfiguration = Code("invalidConfiguration")
        /// An argument of the call is unusable (empty key, bad hash, header injection…).
        public static let invalidArgument = Code("invalidArgument")
    }

    public let code: Code
    /// HTTP status when the server answered.
    public let status: Int?
    /// S3's `<Code>` (e.g. "SignatureDoesNotMatch") when the body had one.
    public let s3Code: String?
    public let message: String
    /// The transport or sink error behind `.transport` / `.sinkFailed`.
    public let underlying: (any Error)?

    public init(_ code: Code, _ message: String, status: Int? = nil, s3Code: String? = nil, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.status = status
        self.s3Code = s3Code
        self.underlying = underlying
    }

    public var description: String { "S3Error.\(code): \(message)" }

    /// Worth retrying later: server errors, throttling, and transport failures that are not our own
    /// limits or a sink's failure.
    public var isTransient: Bool {
        if let status, status >= 500 || status == 429 { return true }
        if code == .requestTimeTooSkewed { return false }
        if code == .transport, let curl = underlying as? CurlError { return curl.code.isTransient }
        return false
    }

    /// Builds the error for a non-2xx response. HEAD answers carry no body, so the status alone
    /// decides there (`notFound` says which 404 it is).
    static func from(status: Int, body: [UInt8], operation: String, notFound: Code = .noSuchKey) -> S3Error {
        let xml = String(decoding: body.prefix(64 << 10), as: UTF8.self)
        let s3Code = MiniXML.first("Code", in: xml)
        let s3Message = MiniXML.first("Message", in: xml)
        let code: Code
        switch s3Code {
        case "AccessDenied": code = .accessDenied
        case "SignatureDoesNotMatch": code = .signatureDoesNotMatch
        case "InvalidAccessKeyId": code = .invalidAccessKeyID
        case "RequestTimeTooSkewed": code = .requestTimeTooSkewed
        case "NoSuchKey": code = .noSuchKey
        case "NoSuchBucket": code = .noSuchBucket
        case "NoSuchUpload": code = .noSuchUpload
        case "PreconditionFailed": code = .preconditionFailed
        case "XAmzContentSHA256Mismatch", "BadDigest": code = .contentSHA256Mismatch
        case "EntityTooSmall": code = .entityTooSmall
        case "InvalidPart", "InvalidPartOrder": code = .invalidPart
        default:
            switch status {
            case 403: code = .accessDenied
            case 404: code = notFound
            case 412: code = .preconditionFailed
            default: code = .http(status)
            }
        }
        var message = "\(operation): HTTP \(status)"
        if let s3Code { message += " \(s3Code)" }
        if let s3Message, !s3Message.isEmpty { message += ": \(s3Message.prefix(300))" }
        return S3Error(code, message, status: status, s3Code: s3Code)
    }

    static func transport(_ error: CurlError, operation: String) -> S3Error {
        if error.code == .sinkFailed {
            return S3Error(.sinkFailed, "\(operation): the receiving sink failed", underlying: error.sinkError ?? error)
        }
        return S3Error(.transport, "\(operation): \(error.description)", underlying: error)
    }
}
