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

    Threads start on demand, when no idle thread is waiting for work.
    """

    def __init__(self, max_workers: int | None = None, name: str = "offload-worker") -> None:
        if max_workers is None:
            max_workers = 32
        self._max_workers = max_workers
        self._work: SimpleQueue = SimpleQueue()
        self._threads: list[threading.Thread] = []
        # Idle workers, counted under the lock (a C lock: threading.Semaphore
        # is pure Python and cost more than the rest of a submit).
        self._idle = [0]
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

    def _submit(self, future: Any, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a worker pool after shutdown")
            self._work.put((future, fn, args, kwargs))
            if self._idle[0]:
                self._idle[0] -= 1
            elif len(self._threads) < self._max_workers:
                thread = threading.Thread(
                    target=_work, args=(self._work, self._idle, self._lock),
                    name=f"{self._name}-{len(self._threads)}", daemon=True,
                )
                thread.start()
                self._threads.append(thread)

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
                item[0].cancel()


def _work(work: SimpleQueue, idle: list[int], lock: threading.Lock) -> None:
    empty = work.empty
    while True:
        if empty():
            # Only a worker about to block counts as idle, so that submit
            # starts a new thread rather than queue behind a busy one.  (A
            # worker that saw work another took blocks uncounted: submit
            # then starts a thread it did not need, never one too few.)
            # No ``get_nowait``: its Empty and traceback cost the worker
            # GIL time after every task, and an idle worker that kept them
            # alive, allocated in the middle of a burst, pinned one of
            # CPython's 1 MiB arenas.
            with lock:
                idle[0] += 1
        item = work.get()
        if item is _SHUTDOWN:
            return
        future, fn, args, kwargs = item
        del item
        if future.set_running_or_notify_cancel():
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the future
                future.set_exception(exc)
            else:
                future.set_result(result)
        del future, fn, args, kwargs


@atexit.register
def _at_exit() -> None:
    # Let running tasks finish within the grace period, then let the
    # interpreter exit: the threads are daemons and will not hold it.
    deadline = time.monotonic() + EXIT_GRACE_PERIOD
    for pool in list(_live_pools):
        pool.shutdown(wait=False)
        pool.join(max(0.0, deadline - time.monotonic()))
