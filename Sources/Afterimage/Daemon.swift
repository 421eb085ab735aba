import Foundation
import Logging
import MicroHTTP
import PQ
import S3

/// The running daemon: the database pool, the storage client and the HTTP server, started in the order
/// that makes readiness true (schema first, then listeners) and stopped in reverse.
public final class Daemon: Sendable {
    public let settings: Settings
    let logger: Logger
    let pool: Pool
    let storage: S3Client
    let server: HTTPServer

    public init(settings: Settings, logger: Logger, listeningSocket: Int32? = nil) throws {
        try settings.validateForServe()
        self.settings = settings
        self.logger = logger
        let databaseURL = try settings.requireDatabaseURL()
        pool = Pool(url: databaseURL, size: settings.database.poolSize,
                    acquireTimeout: .milliseconds(settings.database.acquireTimeoutMilliseconds))
        storage = try Self.makeStorageClient(settings.storage)

        var router = Router()
        HealthRoutes(pool: pool, storage: storage).register(on: &router)
        server = HTTPServer(router: router, configuration: .init(
            host: settings.http.host, port: settings.http.port, listeningSocket: listeningSocket,
            connectionTimeoutSeconds: settings.http.connectionTimeoutSeconds,
            connectionLimit: settings.http.connectionLimit,
            defaultMaxBodyBytes: settings.http.maxBodyBytes))
    }

    /// The storage client from settings; `validateForServe` has already made sure the keys are present.
    static func makeStorageClient(_ storage: Settings.Storage) throws -> S3Client {
        let endpoint = try S3Endpoint(endpoint: storage.endpoint ?? "", region: storage.region,
                                      bucket: storage.bucket ?? "", pathStyle: storage.pathStyle,
                                      prefix: storage.prefix)
        let credentials = S3Credentials(accessKeyID: storage.accessKeyID ?? "",
                                        secretAccessKey: storage.secretAccessKey ?? "", sessionToken: nil)
        return S3Client(endpoint: endpoint, credentials: credentials)
    }

    /// Applies migrations (unless `database.migrate = false`), then starts listening.
    public func start() throws {
        if settings.database.migrate {
            let applied = try Migrator().migrate(databaseURL: try settings.requireDatabaseURL(), logger: logger)
            logger.info("schema current", metadata: ["applied": "\(applied.count)"])
        }
        try server.start()
        logger.info("listening", metadata: ["host": "\(settings.http.host)", "port": "\(server.boundPort)"])
    }

    public var boundPort: Int { server.boundPort }

    /// Stops accepting, lets in-flight requests finish, then closes the database connections.
    public func stop() {
        logger.info("stopping")
        server.stop(drainTimeout: .seconds(10))
        pool.close()
        logger.info("stopped")
    }
}
