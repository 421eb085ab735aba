import Foundation
import Glibc
import Logging
import Primitives
import Synchronization

/// One line per event on stderr, in one of two shapes:
///
/// - under systemd, when stderr is the journal (`$JOURNAL_STREAM` names stderr's device and inode),
///   `<6>listening host=127.0.0.1 port=8080`: the `<N>` prefix is the syslog priority, which journald
///   strips and keeps as the record's level (so `journalctl -p warning` works); journald adds the time;
/// - anywhere else, logfmt: `ts=2026-11-21T10:00:00.000Z level=info msg=listening host=127.0.0.1 port=8080`,
///   which grep, humans and log shippers all read.
///
/// One write(2) per line, so threads never interleave within a line. Nothing here knows which values
/// are secret: callers never put secrets in messages or metadata. The one exception is credentials inside
/// URLs, which arrive from too many places (configuration, libpq's and libcurl's messages, provider
/// errors) to trust every caller with: the userinfo of any URL in the message or a value is masked
/// (`https://***@host`, `URLRedaction`).
public struct StderrLogHandler: LogHandler {
    public enum Format: Sendable { case journal, logfmt }

    public var metadata: Logger.Metadata = [:]
    /// An explicit level for this logger only; nil follows the process-wide level (`LogSetup.setLevel`),
    /// which a reload may change.
    private var ownLevel: Logger.Level?
    private let label: String
    private let format: Format

    public var logLevel: Logger.Level {
        get { ownLevel ?? LogSetup.currentLevel }
        set { ownLevel = newValue }
    }

    public init(label: String, level: Logger.Level? = nil, format: Format = LogSetup.detectedFormat) {
        self.label = label
        self.ownLevel = level
        self.format = format
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = event.metadata.map { metadata.merging($0) { $1 } } ?? metadata
        var line = Self.render(
            level: event.level, message: event.message.description, metadata: merged,
            format: format, now: Date())
        line += "\n"
        line.utf8CString.withUnsafeBufferPointer { buffer in
            _ = Glibc.write(2, buffer.baseAddress, buffer.count - 1)
        }
    }

    /// The line without its newline.
    static func render(level: Logger.Level, message: String, metadata: Logger.Metadata, format: Format, now: Date) -> String {
        var line: String
        let message = URLRedaction.redactingUserInfo(message)
        switch format {
        case .journal:
            line = "<\(syslogPriority(level))>\(escape(message, quoteSpaces: false))"
        case .logfmt:
            line = "ts=\(timestamp(now)) level=\(level) msg=\(escape(message, quoteSpaces: true))"
        }
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            line += " \(key)=\(escape(URLRedaction.redactingUserInfo(value.description), quoteSpaces: true))"
        }
        return line
    }

    /// RFC 5424 severities; swift-log's trace has none of its own and shares debug's.
    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    static func timestamp(_ date: Date) -> String { date.rfc3339(fractionDigits: 3) }

    /// Keeps each event on one line: newlines and control characters are escaped, values with spaces,
    /// quotes or `=` quoted (logfmt), and an empty value is `""`.
    static func escape(_ text: String, quoteSpaces: Bool) -> String {
        var out = ""
        var needsQuotes = false
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\"" where quoteSpaces:
                out += "\\\""
                needsQuotes = true
            case "\\" where quoteSpaces:
                out += "\\\\"
                needsQuotes = true
            case " " where quoteSpaces, "=" where quoteSpaces:
                out.unicodeScalars.append(scalar)
                needsQuotes = true
            default:
                if scalar.value < 0x20 || scalar.value == 0x7f {
                    out += "\\x" + Hex.encode([UInt8(scalar.value)])
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return needsQuotes || (quoteSpaces && out.isEmpty) ? "\"\(out)\"" : out
    }
}

public enum LogSetup {
    public static func level(named name: String) -> Logger.Level? { Logger.Level(rawValue: name.lowercased()) }

    private static let sharedLevel = Atomic<UInt8>(levelCode(.info))

    /// The process-wide level every logger follows unless given its own.
    public static var currentLevel: Logger.Level {
        let code = sharedLevel.load(ordering: .relaxed)
        return Logger.Level.allCases.first { levelCode($0) == code } ?? .info
    }

    /// Changes the level of every logger at once (SIGHUP reload of `log.level`).
    public static func setLevel(_ level: Logger.Level) {
        sharedLevel.store(levelCode(level), ordering: .relaxed)
    }

    private static func levelCode(_ level: Logger.Level) -> UInt8 {
        UInt8(Logger.Level.allCases.firstIndex(of: level) ?? 2)
    }

    /// Journal when `$JOURNAL_STREAM` (`device:inode`, set by systemd for StandardError=journal)
    /// matches what stderr actually is: a daemon whose stderr was redirected elsewhere by a wrapper
    /// inherits the variable, and must then not write `<N>` prefixes into a file.
    public static var detectedFormat: StderrLogHandler.Format {
        isJournal(environment: ProcessInfo.processInfo.environment) ? .journal : .logfmt
    }

    static func isJournal(environment: [String: String], descriptor: Int32 = 2) -> Bool {
        guard let value = environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    /// Installs the stderr handler once per process (swift-log allows a single bootstrap) and sets the level.
    public static func bootstrap(level: Logger.Level) {
        setLevel(level)
        let format = detectedFormat
        LoggingSystem.bootstrap { label in StderrLogHandler(label: label, format: format) }
    }
}
