"""Context for tasks running in worker processes.

What each part is, and where it lives:

``worker_pool()``
    a :class:`~offload._backends.process.pool.ProcessWorkerPool`: worker
    processes, each with a pipe of work items and a pipe of message chunks,
    read by one thread of the pool in the main process.
``event()``, ``cancel_flag()``
    an event, and a task's cancel flag, in shared memory
    (:mod:`.flags`): set and read without any message.
``queue()``
    a :class:`~offload._backends.process.queue.ProcessQueue`, put to by
    workers through their message pipe.
``message_router()``
    a :class:`~offload._backends.process.router.ProcessRouter`.

Nothing here needs a ``multiprocessing.Manager`` or any helper process
besides the workers (and the start method's own forkserver).
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import weakref
from typing import Any

from offload._backends.forwarding import check_forward
from offload._backends.interface import (
    ContextBase,
    check_max_workers,
    check_open,
    check_seconds,
)
from offload._backends.main_script import check_guarded, spare_workers_a_missing_script
from offload._backends.process.flags import FlagSlots, ProcessCancelFlag, ProcessEvent
from offload._backends.process.pool import STOP_GRACE_PERIOD, ProcessWorkerPool
from offload._backends.process.queue import ProcessQueue
from offload._backends.process.recycling import make_limits
from offload._backends.process.router import ProcessRouter
from offload._event_loops.interface import IEventLoop
from offload._routing.interface import IMessageRouter

logger = logging.getLogger("offload.contexts.process")


def default_start_method() -> str:
    """``"forkserver"`` where the platform has it (Linux, BSD), else ``"spawn"``.

    Both are safe in a process that runs threads, as a GUI application
    does; ``"fork"`` is not (a child can inherit a lock held by another
    thread, and deadlock).  macOS has forkserver but its system frameworks
    dislike forking, so it gets spawn, like Python's own default there.
    """
    if sys.platform != "darwin" and "forkserver" in multiprocessing.get_all_start_methods():
        return "forkserver"
    return "spawn"


#: Modules every worker needs: a forkserver that has imported them forks
#: workers that are ready at once (importing them takes a few hundred ms).
WORKER_MODULES = ["offload._backends.process.worker", "offload._futures.submit"]

#: Whether this process has set the forkserver's preload list.
_preload_set = False


def _preload_worker_modules(mp_context: Any) -> None:
    """Have the forkserver import offload's worker modules, and not ``__main__``.

    ``set_forkserver_preload`` sets what the forkserver (one per
    application, started with the first worker) imports before it forks
    workers; later calls have no effect once it runs.  Set once per
    process, so that a list the application sets after making its first
    context stands.

    The main module is left out (Python's default list names it, though
    before 3.14 it is never imported that way): the forkserver would run
    the script's import-time code once for the whole application, so a
    script without a ``__main__`` guard would run the application in the
    forkserver, which every worker of every context comes from.  Each
    worker runs the script itself instead, where a missing guard is caught
    (``check_guarded``) and ends that worker only, and where the script's
    functions and globals are found by name (``process_pickling``).
    """
    global _preload_set
    if not _preload_set:
        _preload_set = True
        mp_context.set_forkserver_preload(WORKER_MODULES)


class MultiprocessingContext(ContextBase):
    """Run tasks in worker processes.

    Processes suit CPU-bound pure-Python work, which threads cannot run in
    parallel.  What a task needs must be picklable: callables, arguments,
    results, messages.  Plain :mod:`pickle` is tried first and `cloudpickle`_
    takes over for lambdas, closures and functions of ``__main__``.

    Functions and classes that the main script defines at its top level go
    to workers by reference, as with plain :mod:`multiprocessing`: each
    worker has its own copy of the script, so what a task keeps in the
    script's globals lasts as long as the worker.  Others (defined under
    the ``__main__`` guard, in a script fed on standard input, in an
    interactive session or with ``python -c``; every one with the ``fork``
    start method) go by value, with copies of their globals, with each task.

    Parameters
    ----------
    start_method : {"forkserver", "spawn", "fork"}, optional
        How worker processes start; see :mod:`multiprocessing`.  Default:
        ``"forkserver"`` on Linux, ``"spawn"`` elsewhere, both safe in a
        threaded GUI application.  With either, workers run the main script
        when they start, so a script that makes a context must guard its
        entry point with ``if __name__ == "__main__":``; making a context
        while a worker runs the script raises ``RuntimeError`` (the worker
        ends, and the tasks waiting for workers FAIL saying why), instead
        of running the application in every worker.
    kill_grace : float, optional
        Seconds a force-cancelled task's worker (``future.cancel(force=
        True)``, or a timeout) gets between SIGTERM and SIGKILL, it and
        every process it started (each worker leads its own process
        group).  Default 1.0.
    max_tasks_per_worker : int, optional
        A worker exits after this many tasks, and a new one takes its
        place: a remedy for tasks that leak.  Default: no limit.
    max_worker_memory : int, optional
        A worker whose resident memory (bytes) is over this after a task
        exits, and a new one takes its place.  Read from
        ``/proc/self/statm`` (Linux), or the peak resident size where there
        is no ``/proc``; the application's segments the worker keeps mapped
        for its next tasks do not count.  Default: no limit.

    forward_warnings : bool, optional
        Re-issue on the main thread, with ``warnings.warn_explicit``, the
        warnings that tasks raise, so that the application's filters apply
        (default True).  False leaves them to the worker, which prints
        them on its standard error.
    forward_logging : bool, optional
        Handle on the main thread, with the application's loggers, the
        log records that tasks make at or above the application's root
        level (default True).  See "Warnings and logs from workers" in the
        guide.

    Raises
    ------
    RuntimeError
        If made while a new worker process runs the main script (the
        script has no ``__main__`` guard).
    TypeError, ValueError
        If ``kill_grace``, ``max_tasks_per_worker`` or ``max_worker_memory``
        is not a positive number, or ``forward_warnings`` or
        ``forward_logging`` is not a bool (the message names it).

    Notes
    -----
    A context may serve several executors at once.  :meth:`close` releases
    every process, thread, pipe and shared-memory segment the context made,
    killing workers still busy after a short grace period; using the context
    afterwards raises ``RuntimeError``.  Worker processes exit by themselves
    within about a second if the application dies, however it dies.

    Make, use and close the context on the main thread; its pools, flags and
    queues may be used from any thread.

    .. _cloudpickle: https://github.com/cloudpipe/cloudpickle
    """

    def __init__(
        self,
        start_method: str | None = None,
        *,
        kill_grace: float = 1.0,
        max_tasks_per_worker: int | None = None,
        max_worker_memory: int | None = None,
        forward_warnings: bool = True,
        forward_logging: bool = True,
    ) -> None:
        check_seconds("kill_grace", kill_grace)
        self._kill_grace = kill_grace
        self._limits = make_limits(max_tasks_per_worker, max_worker_memory)
        check_guarded("MultiprocessingContext()")
        self._forward = check_forward(
            "MultiprocessingContext", forward_warnings, forward_logging
        )
        if start_method is None:
            start_method = default_start_method()
        methods = multiprocessing.get_all_start_methods()
        if start_method not in methods:
            raise ValueError(
                f"start_method must be one of {methods} on this platform, "
                f"got {start_method!r}"
            )
        self._start_method = start_method
        self._mp_context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            _preload_worker_modules(self._mp_context)
        if start_method != "fork":
            spare_workers_a_missing_script()
        self._flags = FlagSlots()
        self._pools: weakref.WeakSet[ProcessWorkerPool] = weakref.WeakSet()
        super().__init__()

    @property
    def start_method(self) -> str:
        """How this context starts worker processes."""
        return self._start_method

    def worker_pool(self, *, max_workers: int | None = None) -> ProcessWorkerPool:
        """A new pool of up to ``max_workers`` worker processes (default:
        the number of CPUs), started on demand; the caller shuts it down."""
        check_open(self)
        check_max_workers(max_workers)
        pool = ProcessWorkerPool(
            self._mp_context, max_workers=max_workers,
            kill_grace=self._kill_grace, limits=self._limits,
        )
        self._pools.add(pool)
        return pool

    def event(self) -> ProcessEvent:
        """A new event for your tasks, with the API of ``threading.Event``
        (see :meth:`IParallelContext.event`).

        It lives in shared memory, so worker processes read and write it
        without any message: ``set()``, ``clear()`` and ``is_set()`` cost
        well under a microsecond, and ``wait()`` polls, waking at most about
        2 ms (plus the system's scheduling delay) after ``set()``.  It
        takes 8 bytes of shared memory until the context is closed; once
        the context is closed it reads as set, so nothing waits for ever.
        """
        check_open(self)
        return self._flags.new_event()

    def cancel_flag(self) -> ProcessCancelFlag:
        """A new cancel flag in shared memory (about a microsecond to make)."""
        check_open(self)
        return self._flags.new_flag()

    def queue(self) -> ProcessQueue:
        """A new queue: tasks in worker processes ``put()`` to it, the main
        process reads it like a :class:`queue.Queue`."""
        check_open(self)
        return ProcessQueue()

    def message_router(self, event_loop: IEventLoop) -> IMessageRouter:
        check_open(self)
        return ProcessRouter(event_loop, forward=self._forward)

    def close(self) -> None:
        """Stop every pool this context made and free its shared memory.

        Executors still running on the context stop first (they cancel
        their tasks).  Pools still running work get two seconds, then their
        workers are killed.  Idempotent.
        """
        if not self._mark_closed():
            return
        pools = list(self._pools)
        for pool in pools:
            pool.shutdown(wait=False)
        for pool in pools:
            if not pool.join(STOP_GRACE_PERIOD):
                logger.warning(
                    "MultiprocessingContext.close(): killing worker processes "
                    "still running tasks"
                )
                pool.terminate("the MultiprocessingContext was closed")
                pool.join(STOP_GRACE_PERIOD)
        self._flags.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<MultiprocessingContext {self._start_method!r}, {state}>"

    def __reduce__(self) -> Any:
        raise TypeError(
            "a MultiprocessingContext cannot be sent to a worker process; "
            "pass the queue or flag you need instead"
        )
