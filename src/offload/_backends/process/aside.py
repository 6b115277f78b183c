"""The aside thread: shared-memory work that would stall the thread asking.

Unmapping a large segment (freeing its pages), faulting a cold one's
mapping in, making a spare: each takes tens of milliseconds per 100 MB,
and the thread that would do it is often the GUI thread (a finalizer
that runs in its garbage collection, a submit).  :func:`run` queues such
a job for one thread of offload's, ``offload-shm-aside``, started when a
job comes and ended once none is left, so that a process done with large
payloads keeps no thread for them.  See
``offload._backends.process.segment_cache`` and ``unmapping``, its users.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("offload.shm")

#: The thread's name.
NAME = "offload-shm-aside"

#: Jobs waiting, and the thread (None when none runs).
_jobs: queue.SimpleQueue[tuple[Callable[[Any], None], Any]] = queue.SimpleQueue()
_thread: threading.Thread | None = None
#: Reentrant, as :func:`run` may be called in a garbage collection on a
#: thread that is in here already.
_lock = threading.RLock()


def _forget_in_child() -> None:
    # A forked child has no aside thread, whatever the parent had.
    global _jobs, _thread, _lock
    _jobs = queue.SimpleQueue()
    _thread = None
    _lock = threading.RLock()


os.register_at_fork(after_in_child=_forget_in_child)


def run(job: Callable[[Any], None], argument: Any) -> None:
    """Have the aside thread run ``job(argument)``; start it if none runs.

    May run inside a garbage collection (a finalizer) on a thread that is
    already in here: hence a ``SimpleQueue`` (its ``put`` is reentrant) and
    a reentrant lock.
    """
    global _thread
    _jobs.put((job, argument))
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_run_queued, name=NAME, daemon=True)
            _thread.start()


def on_it() -> bool:
    """Whether this is the aside thread."""
    return threading.current_thread() is _thread


def join(timeout: float) -> None:
    """Wait, at most ``timeout`` seconds, until the aside thread has run
    every job queued (unless this is it)."""
    with _lock:
        thread = _thread
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout)


def _run_queued() -> None:
    global _thread
    _yield_to_others()
    while True:
        try:
            job, argument = _jobs.get_nowait()
        except queue.Empty:
            with _lock:
                if _jobs.empty():
                    _thread = None
                    return
            continue
        try:
            job(argument)
        except Exception:
            # Not expected; the thread goes on with the next job (a dead
            # aside thread would leave every later segment mapped).
            logger.exception("offload internal error in the shared-memory aside thread")


#: ``nice`` increment of the aside thread (Linux: per thread).
NICENESS = 10


def _yield_to_others() -> None:
    """Lower this thread's scheduling priority: what it does can wait, and
    on a machine whose cores the workers keep busy it would otherwise take
    CPU time from the GUI thread.  Linux only: there ``setpriority`` given
    a thread's id applies to that thread alone; elsewhere a thread id is no
    process id, and the thread runs at the usual priority."""
    if not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
    except OSError:
        pass  # not allowed here (a sandbox): runs at the usual priority
