import Glibc

/// A value read by many threads at once and replaced rarely, behind a reader-writer lock.
///
/// Why not `Mutex`: every lookup reads the current settings and signing key, from up to 64 connection
/// threads on two cores. Under a mutex the readers queued behind one another (and behind a holder that had
/// been preempted): 11–13% of the lookup path's CPU went to the mutex's slow path in bench/lookup. Readers
/// of a reader-writer lock do not exclude each other.
public final class ReadMostly<Value: Sendable>: @unchecked Sendable {
    // Safe: `value` is only read under the read lock and only written under the write lock; the lock lives
    // at a stable heap address for the object's lifetime, as pthread requires.
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        lock = .allocate(capacity: 1)
        lock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(lock, nil)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    public func read() -> Value {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return value
    }

    public func replace(with newValue: Value) {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        value = newValue
    }
}
