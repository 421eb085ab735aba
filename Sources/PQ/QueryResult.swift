import CLibPQ

/// The rows of one statement, copied out of libpq's `PGresult` (which is freed at once), so a
/// result can outlive its connection and cross threads.
public struct QueryResult: RandomAccessCollection, Sendable {
    /// Rows inserted, updated, deleted, selected... as the server's command tag reports (0 when
    /// the command reports none).
    public let rowsAffected: Int
    /// Column names in result order.
    public var columnNames: [String] { storage.columnNames }

    let storage: ResultStorage

    public var startIndex: Int { 0 }
    public var endIndex: Int { storage.rowCount }
    public subscript(position: Int) -> Row {
        precondition(indices.contains(position), "row \(position) out of range 0..<\(storage.rowCount)")
        return Row(storage: storage, row: position)
    }

    init(storage: ResultStorage, rowsAffected: Int) {
        self.storage = storage
        self.rowsAffected = rowsAffected
    }

    /// Copies every cell of a text-format `PGresult` (the caller still owns and clears it).
    init(copying result: OpaquePointer) {
        let rows = Int(PQntuples(result))
        let columns = Int(PQnfields(result))
        var names: [String] = []
        names.reserveCapacity(columns)
        for column in 0..<columns {
            names.append(PQfname(result, Int32(column)).map { String(cString: $0) } ?? "?column?")
        }
        var values: [String?] = []
        values.reserveCapacity(rows * columns)
        for row in 0..<rows {
            for column in 0..<columns {
                let r = Int32(row)
                let c = Int32(column)
                if PQgetisnull(result, r, c) != 0 {
                    values.append(nil)
                } else {
                    let length = Int(PQgetlength(result, r, c))
                    let bytes = UnsafeRawPointer(PQgetvalue(result, r, c)!).assumingMemoryBound(to: UInt8.self)
                    values.append(String(decoding: UnsafeBufferPointer(start: bytes, count: length), as: UTF8.self))
                }
            }
        }
        let affected = PQcmdTuples(result).flatMap { Int(String(cString: $0)) } ?? 0
        self.init(storage: ResultStorage(columnNames: names, rowCount: rows, values: values), rowsAffected: affected)
    }
}

/// Immutable cells of a result, shared by its rows.
final class ResultStorage: Sendable {
    let columnNames: [String]
    let rowCount: Int
    /// Row-major; nil is SQL NULL.
    let values: [String?]

    init(columnNames: [String], rowCount: Int, values: [String?]) {
        self.columnNames = columnNames
        self.rowCount = rowCount
        self.values = values
    }

    /// The first column of a name, as SQL resolves a duplicated name. A linear search: results have tens of
    /// columns at most, and building a dictionary for every result cost more than all by-name reads (it was
    /// 5 % of a lookup's CPU time in bench/lookup, where columns are read by position).
    func columnIndex(_ name: String) -> Int? {
        columnNames.firstIndex(of: name)
    }
}

/// One row of a `QueryResult`, read column by column as Swift types.
public struct Row: Sendable {
    let storage: ResultStorage
    let row: Int

    public var columnCount: Int { storage.columnNames.count }

    /// Reads a column by position. Errors say which column and which type, never the value.
    public func decode<T: PQDecodable>(_ column: Int, as type: T.Type = T.self) throws(PQError) -> T {
        guard (0..<columnCount).contains(column) else {
            throw PQError(code: .decodingFailed, message: "no column \(column) (the row has \(columnCount))")
        }
        do {
            return try T.pqDecode(text: storage.values[row * columnCount + column])
        } catch {
            throw PQError(code: .decodingFailed, message: "column \(column) \"\(storage.columnNames[column])\": \(error.message)")
        }
    }

    /// Reads a column by name (the first column of that name).
    public func decode<T: PQDecodable>(_ name: String, as type: T.Type = T.self) throws(PQError) -> T {
        guard let column = storage.columnIndex(name) else {
            throw PQError(code: .decodingFailed, message: "no column named \"\(name)\"")
        }
        return try decode(column, as: type)
    }

    /// True when the column holds SQL NULL.
    public func isNull(_ column: Int) -> Bool {
        precondition((0..<columnCount).contains(column), "column \(column) out of range")
        return storage.values[row * columnCount + column] == nil
    }
}
