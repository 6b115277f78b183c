"""The executor's handle of one task: its pool future, and its future's cancel.

offload's own pools (threads, processes) take a :class:`TaskHandle` as the
pool future of a task; any other ``concurrent.futures.Executor`` gets a
real pool future, which a :class:`PoolHandle` watches.  Either way,
calling the handle is the future's ``cancel()``, and a task lost outside
its own code (a dead worker, a withdrawn task) is reported to the router
as a CRASHED message.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from offload._backends.thread.context import ThreadFlagMethods
from offload._event_loops.interface import IEventLoop
from offload._routing.interface import IMessageRouter
from offload._routing.protocol import CRASHED, TaskRunner, raised_message

#: Why a task withdrawn from its pool before it ran ends (a cancelled
#: future ends CANCELLED, whatever the error).
_WITHDRAWN = (
    "the worker pool cancelled this task before it ran (was the pool shut down?)"
)

#: Held while a task handle decides whether a worker takes its task or
#: ``cancel`` withdraws it: a test and an assignment.  One lock for every
#: handle rather than one each: with thousands of tasks outstanding, each
#: object per task is more for the cycle collector to walk, and the lock
#: is held too briefly for workers taking tasks at once to wait on it.
_DECIDING = threading.Lock()


class TaskHandle:
    """One task in one of offload's own pools, standing in for its pool future.

    offload's pools accept it through ``pool._offload_submit(handle, fn)``
    and treat it as the ``concurrent.futures.Future`` they would otherwise
    make: ``set_running_or_notify_cancel`` when a worker takes the task,
    ``set_result`` / ``set_exception`` when it is over, ``cancel`` to
    withdraw it.  That pool future would cost ~1 KB and ~2.5 µs per task (a
    ``Condition`` with its lock and deque, a callback list); offload needs
    none of it, since the runner reports every outcome of the task itself.

    Calling the handle is the future's ``cancel``: set the task's flag and,
    if no worker has taken the task yet, withdraw it, so that it ends at
    once.  Taking and withdrawing race (worker and main thread); whichever
    first finds the task untaken, under ``_DECIDING``, wins, exactly once.

    ``new_flag()`` makes the task's cancel flag (the context's
    ``cancel_flag``): :attr:`flag`, which the task's runner gets too.
    """

    __slots__ = ("router", "task_id", "flag", "event_loop", "pool", "_untaken", "_over")

    def __init__(
        self,
        router: IMessageRouter,
        task_id: int,
        new_flag: Callable[[], Any],
        event_loop: IEventLoop,
    ) -> None:
        self.router = router
        self.task_id = task_id
        self.flag = new_flag()
        #: The loop that delivers the task's messages (``await`` checks it).
        self.event_loop = event_loop
        #: True until a worker takes the task or ``cancel`` withdraws it.
        self._untaken = True
        self._over = False
        #: The pool the task went to (what :meth:`force` asks).
        self.pool: Any = None

    def start(self, pool: Any, runner: TaskRunner) -> None:
        """Submit ``runner`` to ``pool`` (offload's), this handle its future."""
        self.pool = pool
        pool._offload_submit(self, runner)

    def cancel(self) -> bool:
        """Cancel: the future's (main thread) or the pool's (any thread)."""
        self.flag.set()
        if self._take():
            self.set_exception(RuntimeError(_WITHDRAWN))
            return True
        return False

    __call__ = cancel

    def _take(self) -> bool:
        """True for the first caller only: the task is now taken or withdrawn."""
        with _DECIDING:
            untaken = self._untaken
            self._untaken = False
        return untaken

    def force(self) -> None:
        """End the running task by force, after :meth:`cancel` (main thread).

        A pool that can (processes) kills the worker running it; others
        have only the cooperative cancel already asked for.
        """
        kill = getattr(self.pool, "_offload_kill", None)
        if kill is not None:
            kill(self)

    def set_running_or_notify_cancel(self) -> bool:
        """A worker takes the task; False if it was withdrawn.  Any thread."""
        return self._take()

    def set_result(self, result: Any) -> None:
        """The task's runner returned: it reported everything already."""
        self._over = True

    def set_exception(self, exc: BaseException) -> None:
        """The task ended outside its runner (worker died, withdrawn...)."""
        if self._over:
            return
        self._over = True
        self.router.inject(self.task_id, raised_message(exc, CRASHED))


class ThreadTaskHandle(TaskHandle, ThreadFlagMethods):
    """A :class:`TaskHandle` that is also its task's cancel flag, for
    offload's thread pool with the thread context's flags.

    A thread's flag is a few attributes that the main thread sets and the
    worker reads (see ``ThreadCancelFlag``); the handle can hold them, and
    each task then has one object fewer to make, and to walk for the cycle
    collector while thousands are outstanding.  :attr:`flag` is the handle
    itself, as a property: an attribute referring to its own object would
    be a cycle, freed only by the collector.
    """

    __slots__ = ("_set", "_attention", "_gate")

    def __init__(
        self,
        router: IMessageRouter,
        task_id: int,
        new_flag: Callable[[], Any],
        event_loop: IEventLoop,
    ) -> None:
        # ``new_flag`` is not called: this handle is the flag.
        self.router = router
        self.task_id = task_id
        self.event_loop = event_loop
        self._untaken = True
        self._over = False
        self._set = False
        self._attention = False
        self._gate = None

    @property
    def flag(self) -> ThreadTaskHandle:
        """The task's cancel flag: this handle."""
        return self

    def start(self, pool: Any, runner: TaskRunner) -> None:
        """Submit ``runner`` to ``pool`` (offload's thread pool)."""
        pool._offload_submit(self, runner)

    def force(self) -> None:
        """Threads cannot be killed: the cooperative cancel stands."""


class PoolHandle:
    """What the executor keeps of one task in a pool that is not offload's.

    Calling it (:meth:`cancel`) is the future's ``cancel``: it sets the task's flag and
    withdraws the task from the pool if it has not started there, so that a
    task still queued ends at once (CANCELLED) instead of waiting for a
    worker only to be abandoned.  Main thread.

    :meth:`pool_future_done` reports a task that its pool could not run to
    the end.  The runner reports every outcome of the task itself, so its
    pool future fails only when something outside the task broke: the
    worker died, the task could not be sent to it, ...  It runs in whatever
    thread the pool completes futures in, and drops the pool future, which
    would otherwise live (with its lock and condition) until the main thread
    has delivered the task's end.
    """

    __slots__ = ("router", "task_id", "flag", "event_loop", "pool_future", "pool")

    def __init__(
        self,
        router: IMessageRouter,
        task_id: int,
        new_flag: Callable[[], Any],
        event_loop: IEventLoop,
    ) -> None:
        self.router = router
        self.task_id = task_id
        self.flag = new_flag()
        self.event_loop = event_loop
        self.pool_future: concurrent.futures.Future | None = None
        self.pool: Any = None

    def start(self, pool: concurrent.futures.Executor, runner: TaskRunner) -> None:
        """Submit ``runner`` to ``pool``; watch its pool future."""
        self.pool = pool
        pool_future = pool.submit(runner)
        self.pool_future = pool_future
        pool_future.add_done_callback(self.pool_future_done)

    def cancel(self) -> None:
        self.flag.set()
        pool_future = self.pool_future
        if pool_future is not None:
            pool_future.cancel()

    __call__ = cancel

    def force(self) -> None:
        """End the running task by force, if its pool can (Dask's pool
        restarts a worker that runs one task at a time).  Main thread."""
        kill = getattr(self.pool, "_offload_kill", None)
        pool_future = self.pool_future
        if kill is not None and pool_future is not None:
            kill(pool_future)

    def pool_future_done(self, pool_future: concurrent.futures.Future) -> None:
        self.pool_future = None
        if pool_future.cancelled():
            error: BaseException = RuntimeError(_WITHDRAWN)
        else:
            exc = pool_future.exception()
            if exc is None:
                return
            error = exc
        self.router.inject(self.task_id, raised_message(error, CRASHED))
