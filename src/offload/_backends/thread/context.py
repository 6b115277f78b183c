"""Context for tasks running in threads of this process."""

from __future__ import annotations

import concurrent.futures
import queue
import threading

from offload._backends.interface import (
    ContextBase,
    check_max_workers,
    check_open,
)
from offload._backends.thread.pausing import ThreadPauseGate
from offload._backends.thread.pool import WorkerThreadPool
from offload._backends.thread.router import ThreadRouter
from offload._event_loops.interface import IEventLoop
from offload._routing.interface import IMessageRouter


class ThreadFlagMethods:
    """What a cancel flag for threads does, on the attributes ``_set``,
    ``_attention`` and ``_gate`` of whatever holds them: a
    :class:`ThreadCancelFlag`, or the task handle of offload's own thread
    pool, which is its task's flag (one object fewer per task)."""

    _set: bool
    _attention: bool
    _gate: ThreadPauseGate | None

    def set(self) -> None:
        """Ask for cancellation (main thread); wake the task if paused."""
        self._set = True
        self._attention = True
        gate = self._gate
        if gate is not None:
            gate.cancel()

    def is_set(self) -> bool:
        """True once :meth:`set` was called (any thread)."""
        return self._set

    def attention(self) -> bool:
        """True once set, paused or sent a value (the task's thread)."""
        return self._attention

    def knock(self) -> None:
        """Make :meth:`attention` true: the gate has news (main thread)."""
        self._attention = True

    def pause_gate(self) -> ThreadPauseGate:
        """The task's pause gate, made at the first call (main thread)."""
        gate = self._gate
        if gate is None:
            gate = self._gate = ThreadPauseGate(self.knock)
        return gate

    def worker_gate(self) -> ThreadPauseGate:
        """The same gate, for the task (made before any knock)."""
        gate = self._gate
        assert gate is not None, "knocked before the gate was made"
        return gate


class ThreadCancelFlag(ThreadFlagMethods):
    """A cancel flag for threads: a plain attribute, nearly free to make.

    ``threading.Event`` would work but costs a lock and a condition per task;
    a bool that one thread writes and others read needs neither.  Unset, it
    is the class's False: no ``__init__`` to run, one per task, and no
    instance dict until it is set.
    """

    _set = False
    #: True once set, paused or sent a value: what a pause point asks.
    _attention = False
    #: The task's pause gate, once its future paused or sent a value.
    _gate: ThreadPauseGate | None = None


class MultithreadingContext(ContextBase):
    """Run tasks in worker threads of this process (the executor's default).

    Threads suit I/O-bound work and work that releases the GIL (NumPy, most
    C extensions).  For pure-Python CPU-bound work use
    :class:`~offload.api.MultiprocessingContext`.

    Tasks run in the pool's daemon worker threads; their messages are
    delivered, and futures change, on the main thread.  Make and close the
    context on the main thread.
    """

    def __init__(self) -> None:
        super().__init__()

    def worker_pool(self, *, max_workers: int | None = None) -> concurrent.futures.Executor:
        check_open(self)
        check_max_workers(max_workers)
        # Not ThreadPoolExecutor: its workers would hold the interpreter at
        # exit for as long as a stuck task runs.
        return WorkerThreadPool(max_workers=max_workers)

    def event(self) -> threading.Event:
        """A new ``threading.Event`` for your tasks (see
        :meth:`IParallelContext.event`)."""
        check_open(self)
        return threading.Event()

    def cancel_flag(self) -> ThreadCancelFlag:
        """A new cancel flag for one task: a plain flag, nearly free."""
        if self._closed:  # check_open, inline: one flag per task
            check_open(self)
        return ThreadCancelFlag()

    def queue(self) -> queue.Queue:
        check_open(self)
        return queue.Queue()

    def message_router(self, event_loop: IEventLoop) -> IMessageRouter:
        check_open(self)
        return ThreadRouter(event_loop)

    def close(self) -> None:
        """Refuse further use; executors still running on it stop."""
        if not self._mark_closed():
            return

