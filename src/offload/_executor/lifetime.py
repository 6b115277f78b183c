"""An executor's task table, the announcement of a task submitted from
another thread, and what happens to an executor dropped without ``shutdown()``.

Nothing that outlives the executor holds it: its router, which the event
loop keeps while it is connected, holds only its :class:`TaskTable`.  So
an executor that the application forgets is collected, and its finalizer,
:class:`Dropped`, releases what it made, as a
``concurrent.futures.ThreadPoolExecutor`` lets its threads go once
collected, without losing the tasks still running.
"""

from __future__ import annotations

import concurrent.futures
import threading
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from offload._backends.interface import IParallelContext
from offload._routing.interface import IMessageRouter

#: The message that announces a task submitted from another thread.  Only
#: its :class:`Announcer` ever receives it (matched by identity); it is no
#: control kind, so the router treats it as an ordinary message.
ANNOUNCEMENT = ("offload-submitted", None)


class TaskTable(dict):
    """task id -> future, of an executor's tasks not yet done.

    The executor's bookkeeping, and all that its router holds of it (the
    event loop holds the router while it is connected): a plain dict, so
    that an executor the application forgets is collected.

    The dict itself is the main thread's alone.  Tasks submitted from other
    threads go in :attr:`others`, under ``lock``, until ``stop()``
    :meth:`absorb` takes them in (under the same lock, once other threads can
    submit no more): so the main thread's submissions and the end of its
    tasks take no lock, and no task is ever lost between the two.
    """

    __slots__ = ("on_empty", "ended", "lock", "others")

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__()
        #: Returned by :meth:`finished` when the last task goes: set once the
        #: executor stops, to make it STOPPED.
        self.on_empty: Callable[[], None] | None = None
        #: The futures whose tasks ended, appended here (the executor's
        #: bookkeeping counts them once their final messages are delivered,
        #: and gives a list that notices appends where it must).
        self.ended: list[Any] = []
        #: The executor's lock, held by submissions from other threads.
        self.lock = lock
        #: task id -> future, of the tasks other threads submitted while
        #: the executor ran (under ``lock``).
        self.others: dict[int, Any] = {}

    def finished(self, task_id: int) -> Callable[[], None] | None:
        """Forget a task whose final message the router is about to deliver.

        The router's ``on_finished`` (main thread), called before the
        future's observers run: one of them may call ``shutdown``, which
        must not wait for this task.  When that leaves a stopping executor
        with no task, returns what the router calls once the message is
        delivered: the executor becomes STOPPED after its last future's
        observers ran.
        """
        try:
            future = self[task_id]
        except KeyError:
            return self._other_finished(task_id)
        del self[task_id]  # not pop(): a method call more, once a task
        self.ended.append(future)
        # ``others`` read without the lock: a task that another thread adds
        # meanwhile is not in this dict, and no one stops while it may be.
        if self or self.others:
            return None
        # Dicts never shrink, but clear() drops the table a burst grew.
        self.clear()
        return self.on_empty

    def _other_finished(self, task_id: int) -> Callable[[], None] | None:
        with self.lock:
            others = self.others
            future = others.pop(task_id)
            empty = not (others or self)
            if empty:
                self.others = {}
        self.ended.append(future)
        return self.on_empty if empty else None

    def pending(self) -> list[Any]:
        """The futures not yet done, in the order of their task ids (main
        thread)."""
        with self.lock:
            others = list(self.others.items())
        if not others:
            return list(self.values())
        return [future for _, future in sorted([*self.items(), *others])]

    def absorb(self) -> None:
        """Take :attr:`others` in, in the order of their task ids.  Main
        thread, under ``lock``, once other threads can add no more."""
        others, self.others = self.others, {}
        if others:
            merged = sorted([*self.items(), *others.items()])
            self.clear()
            self.update(merged)


class Announcer:
    """The receiver of a task submitted from another thread, until the main
    thread has announced it.

    The submitting thread registers it with the router as the task's
    receiver and queues :data:`ANNOUNCEMENT` for the task before handing
    the task to its pool, so it comes before anything the task sends.  The
    main thread, delivering it, fires the executor's ``submitted`` and puts
    the future's own ``receive`` in its place.  It holds the executor
    weakly, like everything the router holds.
    """

    __slots__ = ("executor_ref", "router", "task_id", "future", "receive", "task")

    def __init__(
        self,
        executor_ref: weakref.ref,
        router: IMessageRouter,
        task_id: int,
        future: Any,
        receive: Callable[[tuple], bool],
        task: Any,
    ) -> None:
        self.executor_ref = executor_ref
        self.router = router
        self.task_id = task_id
        self.future = future
        self.receive = receive
        self.task = task

    def __call__(self, message: tuple) -> bool:
        """Main thread: announce, then hand over to the future."""
        receive = self.receive
        if message is not ANNOUNCEMENT:
            # Never queued before the announcement by offload's routers;
            # should another router reorder them, the message still
            # reaches the future (and the router forgot a final one's task).
            self._announce()
            final = receive(message)
            if not final:
                self.router.add_receiver(self.task_id, receive)
            return final
        self.router.add_receiver(self.task_id, receive)
        self._announce()
        return False

    def _announce(self) -> None:
        executor = self.executor_ref()
        if executor is not None:
            executor.submitted = (self.future, self.task)


def weak_release_if_idle(executor_ref: weakref.ref) -> Callable[[], None]:
    """The stopping executor's ``_release_if_idle``, through a weak reference."""

    def release_if_idle() -> None:
        executor = executor_ref()
        if executor is not None:
            executor._release_if_idle()

    return release_if_idle


class Dropped:
    """What a TraitsExecutor dropped before it stopped does: release what it
    owns, and warn if it was not even stopping.

    The executor's finalizer, so it holds no reference to the executor.  It
    runs on whichever thread dropped the last reference (or ran the garbage
    collector).  The tasks still running are not lost: the pool is told to
    shut down, which lets them, and those queued, run to their end (its
    threads or processes exit after them), and the router, which their
    futures still need, is disconnected on the main thread once none is
    left.  A pool or context given to the executor is the caller's.

    An executor dropped after ``stop()`` (``self.executor.stop();
    self.executor = None``, in an application that keeps running) is
    released the same way, silently: it was on its way to that.
    """

    __slots__ = ("name", "router", "pool", "context", "stopping")

    def __init__(
        self,
        name: str,
        router: IMessageRouter,
        pool: concurrent.futures.Executor | None,
        context: IParallelContext | None,
    ) -> None:
        self.name = name
        self.router = router
        self.pool = pool
        self.context = context
        #: Set by ``stop()``.
        self.stopping = False

    def __call__(self) -> None:
        try:
            if self.stopping:
                return
            warnings.warn(
                f"{self.name} was dropped without shutdown(): call "
                "executor.shutdown() (at application exit, or in a test's "
                "tearDown) once you are done with it.  Its worker threads or "
                "processes now end once its tasks have",
                ResourceWarning,
                # Past weakref.finalize: the line that dropped the executor
                # (or, for the garbage collector, wherever it ran).
                stacklevel=3,
            )
        finally:
            if self.pool is not None:
                # Thread-safe: running and queued tasks still run.
                self.pool.shutdown(wait=False)
            self.router.release_when_idle(self._release)

    def _release(self) -> None:
        """On the main thread, once no task of the executor is left."""
        self.router.disconnect()
        if self.context is not None:
            self.context.close()
