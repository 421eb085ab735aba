import Glibc
import Synchronization

/// How long each libmicrohttpd event thread has been inside the server's callbacks, so a watchdog can tell
/// a wedged event thread (a callback that never returns, holding every connection that thread serves) from
/// an idle one, which sits in epoll and never calls us. libmicrohttpd offers no periodic hook, so the
/// callbacks mark their own entry and exit.
///
/// Each thread finds its slot through thread-local storage (one `pthread_getspecific` per callback, no
/// lock on the request path); slots are made on a thread's first callback and kept by the watch.
final class EventThreadWatch: Sendable {
    final class Slot: Sendable {
        /// Which watch the slot belongs to (a thread serves one server, but be sure).
        let owner: ObjectIdentifier
        /// CLOCK_MONOTONIC nanoseconds at entry; 0 while the thread is outside our callbacks.
        let enteredAt = Atomic<Int64>(0)
        init(owner: ObjectIdentifier) { self.owner = owner }

        func leave() { enteredAt.store(0, ordering: .releasing) }
    }

    private let slots = Mutex<[Slot]>([])

    /// Marks the calling thread as inside a callback until `leave()` on the returned slot.
    func enter() -> Slot {
        let slot = currentSlot()
        slot.enteredAt.store(Self.now(), ordering: .releasing)
        return slot
    }

    /// The longest time any event thread has now spent inside a callback; zero when none is in one.
    func longestBusy() -> Duration {
        let now = Self.now()
        let oldest = slots.withLock { slots in
            slots.map { $0.enteredAt.load(ordering: .acquiring) }.filter { $0 > 0 }.min()
        }
        return oldest.map { .nanoseconds(max(0, now - $0)) } ?? .zero
    }

    private func currentSlot() -> Slot {
        if let raw = pthread_getspecific(eventThreadSlotKey) {
            let slot = Unmanaged<Slot>.fromOpaque(raw).takeUnretainedValue()
            if slot.owner == ObjectIdentifier(self) { return slot }
            Unmanaged<Slot>.fromOpaque(raw).release()
        }
        let slot = Slot(owner: ObjectIdentifier(self))
        slots.withLock { $0.append(slot) }
        // The thread-local reference is released by the key's destructor when the thread ends.
        pthread_setspecific(eventThreadSlotKey, Unmanaged.passRetained(slot).toOpaque())
        return slot
    }

    private static func now() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }
}

/// The thread-local key holding each event thread's slot (a retained `EventThreadWatch.Slot`).
private let eventThreadSlotKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { raw in
        if let raw { Unmanaged<EventThreadWatch.Slot>.fromOpaque(raw).release() }
    }
    return key
}()
