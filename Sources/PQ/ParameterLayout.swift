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
    /// Lays out `parameters` for libpq and runs `body` with them: text values NUL-terminated (refused when
    /// they contain NUL, which would silently truncate them), `bytea` in binary format, NULL as a NULL
    /// pointer. Every value is copied into one staging buffer.
    static func withParameters<R>(_ parameters: [any PQEncodable], _ body: (ParameterLayout) -> R) throws(PQError) -> R {
        guard parameters.count <= Int(CPQ_QUERY_PARAM_MAX_LIMIT) else {
            throw PQError(code: .invalidParameter, message: "\(parameters.count) parameters; the protocol allows \(CPQ_QUERY_PARAM_MAX_LIMIT)")
        }
        var types: [Oid] = []
        var offsets: [Int?] = []
        var lengths: [Int32] = []
        var formats: [Int32] = []
        types.reserveCapacity(parameters.count)
        offsets.reserveCapacity(parameters.count)
        lengths.reserveCapacity(parameters.count)
        formats.reserveCapacity(parameters.count)
        var buffer: [UInt8] = []  // every parameter's bytes, one allocation, each text value NUL-terminated
        for (index, parameter) in parameters.enumerated() {
            var oid = type(of: parameter).pqTypeOID
            switch parameter.pqValue {
            case .null:
                offsets.append(nil); lengths.append(0); formats.append(0)
            case .text(let text):
                try checkNoNUL(text, what: "parameter $\(index + 1)")
                offsets.append(buffer.count)
                buffer.append(contentsOf: text.utf8)
                buffer.append(0)
                lengths.append(Int32(clamping: text.utf8.count)); formats.append(0)
            case .bytea(let bytes):
                guard bytes.count < Int(Int32.max) else {
                    throw PQError(code: .invalidParameter, message: "parameter $\(index + 1) is larger than PostgreSQL's 1 GB limit")
                }
                oid = PQTypeOID.bytea
                offsets.append(buffer.count)
                buffer.append(contentsOf: bytes)
                lengths.append(Int32(bytes.count)); formats.append(1)
            }
            types.append(oid)
        }
        buffer.append(0)  // never empty, so every non-NULL parameter has a non-NULL pointer
        return buffer.withUnsafeBufferPointer { storage in
            let base = UnsafeRawPointer(storage.baseAddress!).assumingMemoryBound(to: CChar.self)
            let values: [UnsafePointer<CChar>?] = offsets.map { offset in offset.map { base + $0 } }
            return body(ParameterLayout(count: Int32(parameters.count), types: types, values: values, lengths: lengths, formats: formats))
        }
    }
}
