import CLibPQ

/// Query parameters laid out as the four arrays libpq's PQexecParams and PQexecPrepared take.
///
/// The pointers in `values` are only valid inside the `withParameters` call that made the layout.
struct ParameterLayout {
    let count: Int32
    let types: [Oid]
    let values: [UnsafePointer<CChar>?]
    let lengths: [Int32]
    let formats: [Int32]
}

extension Connection {
    /// From this size on, a parameter's bytes are handed to libpq from the caller's own storage instead of
    /// being copied into the staging buffer: a 30 MiB webhook body then exists twice while it is sent (the
    /// caller's array and libpq's send buffer) instead of three times. Smaller values are staged, which
    /// keeps the nesting of pinned buffers (one closure per large value) shallow.
    static let directParameterBytes = 16 * 1024

    /// Lays out `parameters` for libpq and runs `body` with them: text values NUL-terminated (refused when
    /// they contain NUL, which would silently truncate them), `bytea` and `.binary` in binary format, NULL as a NULL
    /// pointer. Small values are copied into one staging buffer; large ones are pinned in place (see
    /// `directParameterBytes`) for the duration of `body`.
    static func withParameters<R>(_ parameters: [any PQEncodable], _ body: (ParameterLayout) -> R) throws(PQError) -> R {
        guard parameters.count <= Int(CPQ_QUERY_PARAM_MAX_LIMIT) else {
            throw PQError(code: .invalidParameter, message: "\(parameters.count) parameters; the protocol allows \(CPQ_QUERY_PARAM_MAX_LIMIT)")
        }
        var types: [Oid] = []
        var slots: [Slot] = []
        var lengths: [Int32] = []
        var formats: [Int32] = []
        types.reserveCapacity(parameters.count)
        slots.reserveCapacity(parameters.count)
        lengths.reserveCapacity(parameters.count)
        formats.reserveCapacity(parameters.count)
        var buffer: [UInt8] = []  // small parameters' bytes, one allocation, each text value NUL-terminated
        var pinned: [PQValue] = []  // large parameters, passed from their own storage
        for (index, parameter) in parameters.enumerated() {
            var oid = type(of: parameter).pqTypeOID
            let value = parameter.pqValue
            switch value {
            case .null:
                slots.append(.null)
                lengths.append(0)
                formats.append(0)
            case .text(let text):
                try checkNoNUL(text, what: "parameter $\(index + 1)")
                let count = text.utf8.count
                if count >= directParameterBytes {
                    slots.append(.pinned(pinned.count))
                    pinned.append(value)
                } else {
                    slots.append(.staged(buffer.count))
                    buffer.append(contentsOf: text.utf8)
                    buffer.append(0)
                }
                lengths.append(Int32(clamping: count))
                formats.append(0)
            case .bytea(let bytes), .binary(_, let bytes):
                guard bytes.count < Int(Int32.max) else {
                    throw PQError(code: .invalidParameter, message: "parameter $\(index + 1) is larger than PostgreSQL's 1 GB limit")
                }
                if case .binary(let binaryOID, _) = value { oid = binaryOID } else { oid = PQTypeOID.bytea }
                if bytes.count >= directParameterBytes {
                    slots.append(.pinned(pinned.count))
                    pinned.append(value)
                } else {
                    slots.append(.staged(buffer.count))
                    buffer.append(contentsOf: bytes)
                }
                lengths.append(Int32(bytes.count))
                formats.append(1)
            }
            types.append(oid)
        }
        buffer.append(0)  // never empty, so every staged parameter has a non-NULL pointer
        return buffer.withUnsafeBufferPointer { storage in
            let base = UnsafeRawPointer(storage.baseAddress!).assumingMemoryBound(to: CChar.self)
            return withPinned(pinned[...], pointers: []) { pinnedPointers in
                let values: [UnsafePointer<CChar>?] = slots.map { slot in
                    switch slot {
                    case .null: nil
                    case .staged(let offset): base + offset
                    case .pinned(let index): pinnedPointers[index]
                    }
                }
                return body(ParameterLayout(count: Int32(parameters.count), types: types, values: values, lengths: lengths, formats: formats))
            }
        }
    }

    /// Where a parameter's bytes are for libpq.
    private enum Slot {
        case null
        case staged(Int)
        case pinned(Int)
    }

    /// Calls `body` with a pointer to each value's own bytes, all valid for the whole call: one nested
    /// `withUnsafeBufferPointer` (bytea) or `withCString` (text, NUL-terminated) scope per value, so nothing
    /// is copied. (Swift offers no other way to keep several arrays' storage pinned at once.)
    private static func withPinned<R>(
        _ values: ArraySlice<PQValue>, pointers: [UnsafePointer<CChar>?],
        _ body: ([UnsafePointer<CChar>?]) -> R
    ) -> R {
        guard let first = values.first else { return body(pointers) }
        let rest = values.dropFirst()
        switch first {
        case .bytea(let bytes), .binary(_, let bytes):
            return bytes.withUnsafeBufferPointer { buffer in
                let pointer = UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
                return withPinned(rest, pointers: pointers + [pointer], body)
            }
        case .text(let text):
            return text.withCString { pointer in withPinned(rest, pointers: pointers + [pointer], body) }
        case .null:
            return withPinned(rest, pointers: pointers + [nil], body)
        }
    }
}
