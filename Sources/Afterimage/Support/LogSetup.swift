import Foundation
import Logging

/// One line per event on stderr, level first, then the message, then `key=value` metadata:
/// `info listening host=127.0.0.1 port=8080`. Easy to grep, and journald keeps it as one record.
public struct StderrLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String

    public init(label: String, level: Logger.Level) {
        self.label = label
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = "\(event.level) \(Self.escape(event.message.description, quoteSpaces: false))"
        let merged = event.metadata.map { metadata.merging($0) { $1 } } ?? metadata
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            line += " \(key)=\(Self.escape(value.description, quoteSpaces: true))"
        }
        line += "\n"
        // One write(2) per line so concurrent threads never interleave within a line.
        line.utf8CString.withUnsafeBufferPointer { buffer in
            _ = Foundation.write(2, buffer.baseAddress, buffer.count - 1)
        }
    }

    /// Keeps each event on one line: newlines and control characters are escaped, values with spaces quoted.
    static func escape(_ text: String, quoteSpaces: Bool) -> String {
        var out = ""
        var needsQuotes = false
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\"" where quoteSpaces: out += "\\\""; needsQuotes = true
            case " " where quoteSpaces: out.unicodeScalars.append(scalar); needsQuotes = true
            default:
                if scalar.value < 0x20 || scalar.value == 0x7f {
                    out += String(format: "\\x%02x", scalar.value)
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

    /// Installs the stderr handler once per process; swift-log allows a single bootstrap.
    public static func bootstrap(level: Logger.Level) {
        LoggingSystem.bootstrap { label in StderrLogHandler(label: label, level: level) }
    }
}
