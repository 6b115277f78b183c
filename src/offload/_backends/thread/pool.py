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
from collections import deque
from collections.abc import Callable
from typing import Any

#: Seconds the interpreter waits, at exit, for tasks still running.
EXIT_GRACE_PERIOD = 2.0

_SHUTDOWN = object()
#: The keyword arguments of a task submitted without any (never changed).
_NO_KWARGS: dict = {}
_pool_ids = itertools.count()
_live_pools: weakref.WeakSet[WorkerThreadPool] = weakref.WeakSet()


class WorkerThreadPool(concurrent.futures.Executor):
    """Runs submitted callables in up to ``max_workers`` daemon threads.

    A task goes to the thread that went idle last; a thread starts when
    more tasks wait than idle threads could take, up to ``max_workers``.
    So tasks submitted together run together, a pool whose tasks come two
    at a time keeps about two threads, and tasks that come one at a time
    run on one thread, however many a burst started.
    """

    #: A task's handle is marked running in the thread that runs it, right
    #: before it runs: where a time limit starts (see _executor.options).
    starts_when_taken = True

    def __init__(self, max_workers: int | None = None, name: str = "offload-worker") -> None:
        if max_workers is None:
            max_workers = 32
        self._max_workers = max_workers
        #: Tasks not yet taken, in order: appended under ``_lock``; a busy
        #: thread may pop its next one without it (see _work).
        self._queue: deque = deque()
        self._threads: list[threading.Thread] = []
        #: The boxes ``[lock, handed task]`` of idle threads, each waiting
        #: on its lock, the last one to go idle on top.
        self._parked: list[list] = []
        #: [an idle thread was handed a task and is on its way (0 or 1: one
        #: at a time), threads started and on their way].
        self._coming = [0, 0]
        # A C lock: threading.Condition and Semaphore are pure Python and
        # cost more than the rest of a submit.
        self._lock = threading.Lock()
        self._shutdown = False
        #: A task of negative priority was submitted (see _offload_submit).
        self._lowered = False
        self._name = f"{name}-{next(_pool_ids)}"
        _live_pools.add(self)

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._offload_submit(future, fn, args, kwargs)
        return future

    def _offload_submit_priority(self, handle: Any, fn: Callable[..., Any], priority: int) -> None:
        """:meth:`_offload_submit` for a task of ``priority``: it starts
        before the queued tasks of lower priority, after those of its own
        or higher (``handle.priority`` says it to later submissions)."""
        self._offload_submit(handle, fn, (), _NO_KWARGS, priority)

    def _offload_submit(
        self,
        handle: Any,
        fn: Callable[..., Any],
        args: tuple = (),
        kwargs: dict = _NO_KWARGS,
        priority: int = 0,
    ) -> None:
        """Run ``fn(*args, **kwargs)``, with ``handle`` as its pool future.

        The executor calls it with its ``handle`` of a task and the task's
        runner (no arguments).  ``handle`` has the methods of
        ``concurrent.futures.Future`` that the workers call; see
        ``offload._executor.handles.TaskHandle``.
        """
        item = (handle, fn, args, kwargs)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a worker pool after shutdown")
            coming = self._coming
            parked = self._parked
            if parked and not coming[0]:
                # Handed to the idle thread that went idle last, which runs
                # it without taking the lock (taking it there was the first
                # thing a woken thread did, on cold caches: 4 µs of a round
                # trip on two CPUs).  One idle thread at a time is woken; it
                # hands on the next task queued meanwhile (see _work).  Waking
                # one per task in a burst made a fifth of all tasks sleep
                # and wake, and cost a fifth of the throughput.
                _hand(item, parked, coming)
                return
            queue = self._queue
            if priority or self._lowered:
                # Once a task of negative priority was queued, every task is
                # placed by rank: the plain ones go before it.
                self._lowered = self._lowered or priority < 0
                _insert_ranked(queue, item, priority)
            else:
                queue.append(item)
            threads = self._threads
            if (
                len(queue) <= coming[1] + len(parked)
                or len(threads) >= self._max_workers
            ):
                return
            # More tasks wait than threads on their way or idle could take:
            # tasks submitted together run together.
            thread = threading.Thread(
                target=_work, args=(queue, self._lock, parked, coming),
                name=f"{self._name}-{len(threads)}", daemon=True,
            )
            threads.append(thread)
            coming[1] += 1
        # Started outside the lock, so that the new thread takes its task
        # while ``start`` waits for it.
        try:
            thread.start()
        except RuntimeError:
            # The system is out of threads.  The task waits for one of ours,
            # if there is one; with none it would never run, so it is taken
            # back.
            with self._lock:
                threads.remove(thread)
                coming[1] -= 1
                if threads:
                    return
                try:
                    queue.remove(item)
                except ValueError:  # pragma: no cover - no thread to take it
                    pass
            raise

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        withdrawn: list[tuple] = []
        with self._lock:
            if not self._shutdown:
                self._shutdown = True
                if cancel_futures:
                    withdrawn = list(self._queue)
                    self._queue.clear()
                # After the tasks already queued, one end for each thread.
                self._queue.extend([_SHUTDOWN] * len(self._threads))
                while self._parked:
                    # Woken with nothing handed: each takes an end.
                    self._parked.pop()[0].release()
        # Outside the lock: a future's callbacks may call back into the pool.
        for item in withdrawn:
            item[0].cancel()
        if wait:
            for thread in self._started():
                thread.join()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for every thread to end; True if they did."""
        deadline = time.monotonic() + timeout
        for thread in self._started():
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _started(self) -> list[threading.Thread]:
        # A thread that another thread's submit is starting right now has an
        # end queued for it too, but cannot be joined yet.
        return [thread for thread in self._threads if thread.ident is not None]


def _work(queue: deque, lock: Any, parked: list[list], coming: list[int]) -> None:
    # The pool's state is read and changed under its lock, held for a few
    # operations and never while waiting (the thread keeps no reference to
    # the pool itself).  An idle thread waits on a lock of its own (held: it
    # blocks until a submit releases it), in a box ``[lock, handed task]``
    # pushed where submit takes the last one first.  So tasks that come one
    # at a time keep running on one thread, on warm caches; waking the
    # thread that had waited longest, as a shared queue does, made a round
    # trip after a burst 40-50 µs slower on a 2-vCPU virtual machine.
    popleft = queue.popleft
    park = threading.Lock()
    park.acquire()
    box: list = [park, None]
    started = True  # counted in coming[1] until it first takes the lock
    item = None
    while True:
        if item is None and not started and queue:
            # A busy thread goes on to the next task without the lock (a
            # deque's popleft is atomic; another thread may take it first).
            try:
                item = popleft()
            except IndexError:
                pass
        if item is None:
            with lock:
                if started:
                    coming[1] -= 1
                    started = False
                if queue:
                    try:
                        item = popleft()
                    except IndexError:  # emptied by a busy thread's lock-free pop
                        parked.append(box)
                    else:
                        if queue and parked and not coming[0]:
                            _hand_next(queue, parked, coming)
                else:
                    # No exception raised and caught here: this runs after
                    # the task's end was sent, while the main thread wakes.
                    parked.append(box)
            if item is None:
                park.acquire()
                item = box[1]
                if item is None:
                    continue  # woken by shutdown: its end is queued
                box[1] = None
                # The gate opens again, without the lock.  A submit that
                # found it shut has queued its task, or is queuing it under
                # the lock: taken here if others are idle, to hand it on.
                coming[0] = 0
                if parked:
                    with lock:
                        if queue and parked and not coming[0]:
                            _hand_next(queue, parked, coming)
        if item is _SHUTDOWN:
            return
        future, fn, args, kwargs = item
        item = None
        if future.set_running_or_notify_cancel():
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the future
                future.set_exception(exc)
            else:
                future.set_result(result)
        del future, fn, args, kwargs


def _insert_ranked(queue: deque, item: tuple, priority: int) -> None:
    """Queue ``item`` after every queued task of ``priority`` or higher.

    Under the pool's lock; busy threads may pop from the front meanwhile
    (without it): a scan that runs past the end starts again.
    """
    while True:
        index = len(queue)
        try:
            while index and getattr(queue[index - 1][0], "priority", 0) < priority:
                index -= 1
        except IndexError:
            continue  # shortened meanwhile: scan again
        queue.insert(index, item)
        return


def _hand(item: tuple, parked: list[list], coming: list[int]) -> None:
    """Hand ``item`` to the idle thread that went idle last, and wake it;
    the gate is shut until it is on its way.  Under the pool's lock, with
    idle threads and the gate open."""
    box = parked.pop()
    box[1] = item
    coming[0] = 1
    box[0].release()


def _hand_next(queue: deque, parked: list[list], coming: list[int]) -> None:
    """:func:`_hand` the next queued task, if a busy thread has not taken it."""
    try:
        item = queue.popleft()
    except IndexError:  # taken by a busy thread's lock-free pop
        return
    _hand(item, parked, coming)


@atexit.register
def _at_exit() -> None:
    # Let running tasks finish within the grace period, then let the
    # interpreter exit: the threads are daemons and will not hold it.
    deadline = time.monotonic() + EXIT_GRACE_PERIOD
    for pool in list(_live_pools):
        pool.shutdown(wait=False)
        pool.join(max(0.0, deadline - time.monotonic()))
