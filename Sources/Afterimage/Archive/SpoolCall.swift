import Primitives

/// A system call on the spool: its failure becomes `ArchiveError(.spool)` with the operation and the
/// C library's reason (`writing the spool file failed: No space left on device`), so a full disk is an
/// error that says so and the asset is tried again.
func spoolCall<Result: FixedWidthInteger>(
    _ operation: @autoclosure () -> String, _ call: () -> Result
) throws(ArchiveError) -> Result {
    do throws(SystemCallError) {
        return try systemCall(operation(), call)
    } catch {
        throw ArchiveError(.spool, error.description)
    }
}

/// `writeAll` on a spool file, failing as `spoolCall` does.
func spoolWriteAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, _ operation: @autoclosure () -> String) throws(ArchiveError) {
    do throws(SystemCallError) {
        try writeAll(descriptor, bytes, operation())
    } catch {
        throw ArchiveError(.spool, error.description)
    }
}
