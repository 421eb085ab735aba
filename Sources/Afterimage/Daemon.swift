import Foundation
import Logging
import MicroHTTP
import PQ
import S3

/// The running daemon: the database pool, the storage client, the HTTP server and the archive workers,
/// started in the order that makes readiness true (schema first, then workers and listeners) and
/// stopped in reverse (stop accepting, drain requests, drain transfers, close the database).
public final class Daemon: Sendable {
    public let settings: Settings
    let logger: Logger
    let pool: Pool
    let storage: S3Client
    let server: HTTPServer
    let workers: ArchiveWorkers

    public init(settings: Settings, logger: Logger, listeningSocket: Int32? = nil) throws {
        try settings.validateForServe()
        self.settings = settings
        self.logger = logger
        let databaseURL = try settings.requireDatabaseURL()
        pool = Pool(url: databaseURL, size: settings.database.poolSize,
                    acquireTimeout: .milliseconds(settings.database.acquireTimeoutMilliseconds))
        storage = try Self.makeStorageClient(settings.storage)

        let queue = ArchiveQueue(leaseSeconds: settings.workers.leaseSeconds,
                                 instanceName: "\(ProcessInfo.processInfo.hostName)/\(getpid())")
        let fetchPolicy = FetchPolicy(settings.fetch)
        let replicateToken = settings.replicate.apiToken
        let archiver = Archiver(
            queue: queue, pool: pool, storage: storage, spool: try Spool(directory: settings.workers.spoolDirectory),
            layout: StorageLayout(prefix: settings.storage.prefix), policy: { fetchPolicy },
            sourceToken: { provider in provider == ReplicateIntake.provider ? replicateToken : nil },
            multipartThreshold: settings.storage.multipartThreshold, partSize: settings.storage.partSize, logger: logger)
        workers = ArchiveWorkers(archiver: archiver, databaseURL: databaseURL,
                                 configuration: .init(count: settings.workers.count), logger: logger)

        var router = Router()
        HealthRoutes(pool: pool, storage: storage).register(on: &router)
        let replicateVerifier = StandardWebhooksVerifier(secrets: settings.replicate.webhookSecrets)
        ReplicateWebhookRoute(verifier: { replicateVerifier }, intake: ReplicateIntake(retentionSeconds: settings.replicate.retention),
                              pool: pool, logger: logger)
            .register(on: &router, maxBodyBytes: settings.http.maxBodyBytes)
        let lookupAuthenticator = BearerAuthenticator(tokens: settings.api.tokens)
        LookupRoutes(pool: pool, presigner: Presigner(storage: storage, defaultTTL: settings.storage.presignTTL),
                     authenticator: { lookupAuthenticator }, logger: logger).register(on: &router)
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

    /// Applies migrations (unless `database.migrate = false`), starts the workers, then listens.
    public func start() throws {
        if settings.database.migrate {
            let applied = try Migrator().migrate(databaseURL: try settings.requireDatabaseURL(), logger: logger)
            logger.info("schema current", metadata: ["applied": "\(applied.count)"])
        }
        workers.start()
        try server.start()
        logger.info("listening", metadata: ["host": "\(settings.http.host)", "port": "\(server.boundPort)"])
    }

    public var boundPort: Int { server.boundPort }

    /// Stops accepting, lets in-flight requests finish, drains transfers, then closes the database.
    public func stop() {
        logger.info("stopping")
        server.stop(drainTimeout: .seconds(10))
        workers.stop(drainTimeout: .seconds(settings.workers.drainTimeoutSeconds))
        pool.close()
        logger.info("stopped")
    }
}
