"""One lock around this process's calls into multiprocessing's resource
tracker, which a fork waits for.

Making, attaching or unlinking a shared-memory segment registers or
unregisters its name with ``multiprocessing``'s resource tracker, which
serialises its callers with a lock of its own.  A process forked while
another of its threads holds that lock gives the child a lock that nobody
will release, and the child's first segment then hangs for ever: under the
``fork`` start method, a worker that never runs its task (seen as a test
whose future never ended, when the pool forked a worker while the
submitting thread, or the aside thread, made a segment).

So every such call of offload's runs inside ``with tracker.guard:``, and a
fork of this process waits for the guard (``os.register_at_fork``): no
thread of offload's is inside the tracker when the process forks.  A fork
by code that is not offload's while offload's thread is in the tracker is
safe too, for the same reason; a thread that is not offload's and calls
the tracker itself is outside this guard.
"""

from __future__ import annotations

import os
import threading

#: Held around each call into the resource tracker, and across a fork.
#: Reentrant: a fork inside a guarded section (a task's own fork on the
#: same thread) must not wait for itself.
guard = threading.RLock()


def _before_fork() -> None:
    guard.acquire()


def _after_fork_in_parent() -> None:
    guard.release()


def _after_fork_in_child() -> None:
    global guard
    guard = threading.RLock()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)
