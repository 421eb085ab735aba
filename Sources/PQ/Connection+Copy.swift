import CLibPQ
import Foundation

extension Connection {
    /// Runs one `COPY … FROM STDIN` statement and streams its data: `feed` writes it through the `CopyIn`
    /// in pieces, each handed to libpq (`PQputCopyData`) and sent before the next is taken, so data of any
    /// size costs this process one piece of memory, not a copy of the whole.
    ///
    /// Why: a bound parameter (`PQexecParams`) is copied whole into libpq's send buffer, so a 60 MiB value
    /// would exist twice in this process while it is sent. COPY is the protocol's one way to stream a row
    /// to the server. It runs on this session, inside the caller's transaction when there is one.
    ///
    /// If `feed` throws, the COPY is ended with an error (the server keeps nothing of it, and an enclosing
    /// transaction is then aborted) and `feed`'s error is rethrown. Returns the number of rows copied.
    @discardableResult
    public func copyIn(_ sql: String, _ feed: (CopyIn) throws -> Void) throws -> Int {
        let handle = try liveHandle()
        try Self.checkNoNUL(sql, what: "the SQL text")
        guard let started = PQexec(handle, sql) else {
            throw PQError(code: PQstatus(handle) == CONNECTION_OK ? .queryFailed : .connectionLost, message: Self.errorMessage(handle))
        }
        guard PQresultStatus(started) == PGRES_COPY_IN else {
            // `consume` clears the result, throws the server's error, and leaves any other COPY state.
            _ = try consume(started, handle: handle)
            throw PQError(code: .invalidUse, message: "copyIn needs a COPY … FROM STDIN statement")
        }
        PQclear(started)
        do {
            try feed(CopyIn(handle: handle))
        } catch {
            // The server discards the rows and reports the message; the session stays usable.
            _ = PQputCopyEnd(handle, "the client stopped sending the COPY data")
            while let next = PQgetResult(handle) { PQclear(next) }
            throw error
        }
        guard PQputCopyEnd(handle, nil) == 1 else {
            while let next = PQgetResult(handle) { PQclear(next) }
            throw PQError(code: PQstatus(handle) == CONNECTION_OK ? .queryFailed : .connectionLost, message: Self.errorMessage(handle))
        }
        var outcome: Result<Int, PQError> = .failure(PQError(code: .connectionLost, message: Self.errorMessage(handle)))
        var first = true
        while let result = PQgetResult(handle) {
            if first {
                first = false
                if PQresultStatus(result) == PGRES_COMMAND_OK {
                    outcome = .success(Int(String(cString: PQcmdTuples(result))) ?? 0)
                } else {
                    outcome = .failure(Self.serverError(result, handle: handle))
                }
            }
            PQclear(result)
        }
        return try outcome.get()
    }
}

/// Where `Connection.copyIn` data goes: each `write` hands one piece to libpq, which sends it (the
/// connection is blocking) before returning. Valid only inside the `feed` closure.
public struct CopyIn {
    let handle: OpaquePointer

    /// Largest piece passed to libpq in one call (its length is a C `int`, and its send buffer grows to
    /// hold the piece): larger buffers are sent in pieces of this size.
    static let maxPiece = 256 << 10

    public func write(_ bytes: UnsafeRawBufferPointer) throws(PQError) {
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            let length = min(Self.maxPiece, bytes.count - offset)
            let sent = PQputCopyData(handle, (base + offset).assumingMemoryBound(to: CChar.self), Int32(length))
            guard sent == 1 else {
                throw PQError(
                    code: PQstatus(handle) == CONNECTION_OK ? .queryFailed : .connectionLost,
                    message: Connection.errorMessage(handle))
            }
            offset += length
        }
    }

    public func write(_ bytes: [UInt8]) throws(PQError) {
        let result: Result<Void, PQError> = bytes.withUnsafeBytes { raw in Result { () throws(PQError) in try write(raw) } }
        try result.get()
    }
}

/// PostgreSQL's binary COPY format (`COPY … FROM STDIN (FORMAT binary)`), built piece by piece: the
/// signature and header, then per row a field count and each field as a length and its bytes (in the
/// column's binary send format), then the trailer. A field's bytes may be left to the caller to stream
/// (`fieldLength` then `CopyIn.write`), which is how a large value is sent without a copy in memory.
///
/// Why by hand: no library in this stack writes the format, and it is a documented, fixed layout
/// (PostgreSQL manual, "COPY", "Binary Format"); only the few types intake needs are here.
public struct BinaryCopyEncoder {
    /// What has been encoded since the last `take()`.
    public private(set) var bytes: [UInt8] = []

    public init() {}

    /// The 11-byte signature, a flags field (no OIDs) and an empty header extension.
    public mutating func header() {
        bytes += Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00]
        append(Int32(0))
        append(Int32(0))
    }

    /// Starts a row of `fields` fields.
    public mutating func row(fields: Int) {
        append(Int16(fields))
    }

    public mutating func null() {
        append(Int32(-1))
    }

    public mutating func int64(_ value: Int64) {
        append(Int32(8))
        append(value)
    }

    public mutating func int64(_ value: Int64?) {
        if let value { int64(value) } else { null() }
    }

    /// `text` in UTF-8 (the session's client encoding). A NUL cannot be stored in text and is refused.
    public mutating func text(_ value: String?) throws(PQError) {
        guard let value else { return null() }
        let utf8 = Array(value.utf8)
        guard !utf8.contains(0) else { throw PQError(code: .invalidParameter, message: "a COPY text field contains a NUL byte") }
        append(Int32(utf8.count))
        bytes += utf8
    }

    /// `timestamptz`: microseconds since 2000-01-01 00:00:00 UTC (integer datetimes, every server since 10).
    public mutating func timestamp(_ value: Date?) {
        guard let value else { return null() }
        int64(Int64(((value.timeIntervalSince1970 - 946_684_800) * 1_000_000).rounded()))
    }

    /// The length of a field whose `length` bytes the caller writes next (a `bytea` streamed from a file).
    public mutating func fieldLength(_ length: Int) throws(PQError) {
        guard length >= 0, length <= Int(Int32.max) else {
            throw PQError(code: .invalidParameter, message: "a COPY field of \(length) bytes is too long")
        }
        append(Int32(length))
    }

    /// The end of the data.
    public mutating func trailer() {
        append(Int16(-1))
    }

    /// The encoded bytes, leaving the encoder empty.
    public mutating func take() -> [UInt8] {
        defer { bytes = [] }
        return bytes
    }

    private mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.bigEndian) { bytes += $0 }
    }
}
