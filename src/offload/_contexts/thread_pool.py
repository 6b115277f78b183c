"""A thread pool whose stuck tasks cannot hang the interpreter at exit.

``concurrent.futures.ThreadPoolExecutor`` joins its workers at interpreter
exit, so a background task that never returns (and ignores cancellation)
freezes an application's exit forever.  This pool's workers are daemon
threads: at exit, the pool waits a bounded grace period for running tasks,
then lets the interpreter go.  It is also leaner per task, which matters
because offload submits one task per future.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import itertools
import threading
import time
import weakref
from array import array
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

#: Seconds the interpreter waits, at exit, for tasks still running.
EXIT_GRACE_PERIOD = 2.0

_SHUTDOWN = object()
_pool_ids = itertools.count()
_live_pools: weakref.WeakSet[WorkerThreadPool] = weakref.WeakSet()


class WorkerThreadPool(concurrent.futures.Executor):
    """Runs submitted callables in up to ``max_workers`` daemon threads.

    A thread starts when a task is submitted while every thread already
    has a task (running, or queued for it), up to ``max_workers``.  So
    tasks submitted together run together, and a pool whose tasks come
    two at a time keeps two threads.
    """

    def __init__(self, max_workers: int | None = None, name: str = "offload-worker") -> None:
        if max_workers is None:
            max_workers = 32
        self._max_workers = max_workers
        self._work: SimpleQueue = SimpleQueue()
        self._threads: list[threading.Thread] = []
        # Tasks submitted (main thread, under the lock), and tasks over, one
        # count per thread that only that thread writes: the workers take
        # no lock.  A count read while its thread moves it is at worst one
        # behind, which can start a thread early, never late.  C arrays, not
        # Python ints: an int kept per count, made in the middle of a burst,
        # would pin one of CPython's 1 MiB arenas (32 threads: +32 MB kept
        # once 100,000 futures were dropped).
        self._submitted = array("q", [0])
        self._finished = array("q", [0]) * max_workers
        self._lock = threading.Lock()
        self._shutdown = False
        self._name = f"{name}-{next(_pool_ids)}"
        _live_pools.add(self)

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._submit(future, fn, args, kwargs)
        return future

    def _offload_submit(self, handle: Any, fn: Callable[[], Any]) -> None:
        """Run ``fn()``, with the executor's ``handle`` as its pool future.

        ``handle`` has the methods of ``concurrent.futures.Future`` that the
        workers call; see ``offload._executor.executor._TaskHandle``.
        """
        self._submit(handle, fn, (), {})

    @property
    def _unfinished(self) -> int:
        """Tasks submitted and not over: running, or queued."""
        return self._submitted[0] - sum(self._finished)

    def _submit(self, future: Any, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a worker pool after shutdown")
            self._work.put((future, fn, args, kwargs))
            self._submitted[0] += 1
            threads = self._threads
            # While there are no more unfinished tasks than threads, every
            # queued task has an idle thread on its way to take it.  (The
            # sum runs only while the pool may still grow.)
            if len(threads) < self._max_workers and self._unfinished > len(threads):
                thread = threading.Thread(
                    target=_work, args=(self._work, self._finished, len(threads)),
                    name=f"{self._name}-{len(threads)}", daemon=True,
                )
                try:
                    thread.start()
                except RuntimeError:
                    # The system is out of threads.  The task waits for one
                    # of ours, if there is one; with none it would never
                    # run, so it is taken back (no thread could take it).
                    if threads:
                        return
                    self._work.get_nowait()
                    self._submitted[0] -= 1
                    raise
                threads.append(thread)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if not self._shutdown:
                self._shutdown = True
                if cancel_futures:
                    self._cancel_queued()
                for _ in self._threads:
                    self._work.put(_SHUTDOWN)
        if wait:
            for thread in self._threads:
                thread.join()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for every thread to end; True if they did."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _cancel_queued(self) -> None:
        pending = []
        while not self._work.empty():
            pending.append(self._work.get_nowait())
        for item in pending:
            if item is not _SHUTDOWN:
                self._submitted[0] -= 1
                item[0].cancel()


def _work(work: SimpleQueue, finished: array, index: int) -> None:
    # No idle count: a thread is idle once it has counted its task over.
    # (Counting idle threads as they blocked lost count whenever a busy
    # thread took the task whose put had woken an idle one: the woken
    # thread went back to sleep uncounted, the next submit started a
    # thread, and two tasks at a time grew the pool to ``max_workers``.)
    # No ``get_nowait`` either: its Empty and traceback, allocated in the
    # middle of a burst and kept alive by an idle worker, pinned one of
    # CPython's 1 MiB arenas.
    get = work.get
    while True:
        item = get()
        if item is _SHUTDOWN:
            return
        future, fn, args, kwargs = item
        del item
        try:
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # noqa: BLE001 - handed to the future
                    future.set_exception(exc)
                else:
                    future.set_result(result)
        finally:
            del future, fn, args, kwargs
            # This thread is the only writer of its count.
            finished[index] += 1


@atexit.register
def _at_exit() -> None:
    # Let running tasks finish within the grace period, then let the
    # interpreter exit: the threads are daemons and will not hold it.
    deadline = time.monotonic() + EXIT_GRACE_PERIOD
    for pool in list(_live_pools):
        pool.shutdown(wait=False)
        pool.join(max(0.0, deadline - time.monotonic()))
