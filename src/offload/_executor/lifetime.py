"""An executor's task table, and what happens to one dropped without ``shutdown()``.

Nothing that outlives the executor holds it: its router, which the event
loop keeps while it is connected, holds only its :class:`TaskTable`.  So
an executor that the application forgets is collected, and its finalizer,
:class:`Dropped`, releases what it made, as a
``concurrent.futures.ThreadPoolExecutor`` lets its threads go once
collected, without losing the tasks still running.
"""

from __future__ import annotations

import concurrent.futures
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from offload._backends.interface import IParallelContext
from offload._routing.interface import IMessageRouter


class TaskTable(dict):
    """task id -> future, of an executor's tasks not yet done.

    The executor's bookkeeping, and all that its router holds of it (the
    event loop holds the router while it is connected): a plain dict, so
    that an executor the application forgets is collected.
    """

    __slots__ = ("on_empty", "on_end")

    def __init__(self) -> None:
        super().__init__()
        #: Returned by :meth:`finished` when the last task goes: set once the
        #: executor stops, to make it STOPPED.
        self.on_empty: Callable[[], None] | None = None
        #: Called with each future whose task ended (the executor's
        #: bookkeeping counts it once its final message is delivered).
        self.on_end: Callable[[Any], None] | None = None

    def finished(self, task_id: int) -> Callable[[], None] | None:
        """Forget a task whose final message the router is about to deliver.

        The router's ``on_finished`` (main thread), called before the
        future's observers run: one of them may call ``shutdown``, which
        must not wait for this task.  When that leaves a stopping executor
        with no task, returns what the router calls once the message is
        delivered: the executor becomes STOPPED after its last future's
        observers ran.
        """
        future = self.pop(task_id)
        if self.on_end is not None:
            self.on_end(future)
        if self:
            return None
        # Dicts never shrink, but clear() drops the table a burst grew.
        self.clear()
        return self.on_empty


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
