import Foundation
import Glibc

/// A daemon must not depend on the signal mask its launcher happened to have: signals blocked in the parent
/// stay blocked across exec, and a blocked SIGTERM would make the daemon unstoppable short of SIGKILL.
func resetSignalMask() {
    var empty = sigset_t()
    sigemptyset(&empty)
    pthread_sigmask(SIG_SETMASK, &empty, nil)
}
