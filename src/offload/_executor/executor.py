"""TraitsExecutor: submit tasks, track them, stop and shut down.

Why this module is long: submitting (from the main thread or any other),
stopping and shutting down read and change the same state, task table and
lock, and their races are only clear when read side by side.  Per-task
options live in ``options``, handles in ``handles``, the task table in
``lifetime``, ``futures`` and ``counts`` in ``bookkeeping``.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import threading
import time
import warnings
import weakref
from typing import Any

from traits.api import Any as AnyTrait
from traits.api import Bool, Dict, Event, HasStrictTraits, Int, List, Property, Str

from offload._backends.interface import IParallelContext, check_max_workers, check_open
from offload._backends.thread.context import MultithreadingContext
from offload._backends.thread.pool import WorkerThreadPool
from offload._event_loops.interface import IEventLoop
from offload._executor.bookkeeping import Bookkeeping
from offload._executor.handles import PoolHandle, TaskHandle, ThreadTaskHandle
from offload._executor.lifetime import (
    ANNOUNCEMENT,
    Announcer,
    Dropped,
    TaskTable,
    weak_release_if_idle,
)
from offload._executor.options import TaskOptions, check_timeout
from offload._executor.states import RUNNING, STOPPED, STOPPING, ExecutorState
from offload._futures.base import IFuture, ITaskSpecification
from offload._futures.states import WAITING
from offload._futures.submit import submit_call, submit_iteration, submit_progress
from offload._routing.interface import IMessageRouter
from offload._routing.protocol import TaskRunner

logger = logging.getLogger("offload.executor")

#: Seconds ``shutdown`` waits for killed worker processes' tasks to end.
_TERMINATE_TIMEOUT = 10.0


def _default_event_loop() -> IEventLoop:
    try:
        from offload._event_loops.ets import ETSEventLoop
    except ImportError:
        raise RuntimeError(
            "TraitsExecutor needs an event loop to deliver results on the "
            "main thread: pass event_loop=AsyncioEventLoop() (from "
            "offload.api) for an asyncio program, or install a GUI toolkit "
            "(pip install 'offload[pyside6]') for a Traits GUI application"
        ) from None
    return ETSEventLoop()


class TraitsExecutor(HasStrictTraits):
    """Runs background tasks and reports on them through futures.

    Parameters
    ----------
    thread_pool : concurrent.futures.Executor, optional
        Deprecated synonym of ``worker_pool``.
    context : IParallelContext, optional
        Where tasks run.  Default: a :class:`MultithreadingContext` that the
        executor owns and closes.
    event_loop : IEventLoop, optional
        Where futures are updated.  Default: ``ETSEventLoop()``, the GUI
        toolkit chosen the Pyface way.
    worker_pool : concurrent.futures.Executor, optional
        A pool from the same context that the caller owns and shuts down.
        Default: a pool that the executor makes from the context and owns.
    max_workers : int, optional
        Size of the pool the executor makes.  Not allowed with ``worker_pool``.
    default_timeout : float, optional
        A time limit (seconds) for every task submitted to this executor,
        as ``options(timeout=...)`` sets one for some; default None (none).

    Notes
    -----
    Make the executor, stop it and shut it down on the main thread, the
    thread that runs the event loop; submit to it from any thread.  Every
    trait change of the executor and its futures happens on the main
    thread.
    """

    #: RUNNING, STOPPING or STOPPED.  Read-only, observable.
    state = Property(ExecutorState)

    #: True while RUNNING: tasks may be submitted.
    running = Property(Bool())

    #: True once STOPPED: every task has ended and resources are released.
    stopped = Property(Bool())

    #: Fired on the main thread for each successful ``submit`` with
    #: ``(future, task specification)``: what ``offload.ui.ActivityView``
    #: follows.  For a submission from another thread, it fires before the
    #: task's first message is delivered.  Costs a few tens of nanoseconds
    #: unobserved.
    submitted = Event()

    #: The futures not yet done, oldest first (a new list on each read).
    #: Read-only; observable, notified on the main thread once per batch of
    #: delivered messages (and once after a burst of submissions).
    futures = Property(List())

    #: Number of this executor's futures in each of the six states (the
    #: states' names as keys, every state present), those done included.
    #: Read-only; observable, notified as ``futures`` is.
    counts = Property(Dict(Str(), Int()))

    _state = AnyTrait(RUNNING)
    _context = AnyTrait()
    _new_cancel_flag = AnyTrait()
    _owns_context = Bool(False)
    _event_loop = AnyTrait()
    _worker_pool = AnyTrait()
    _handle_class = AnyTrait()
    _owns_worker_pool = Bool(False)
    _router = AnyTrait()
    _sender = AnyTrait()
    _futures = AnyTrait()
    _task_ids = AnyTrait()
    _thread = AnyTrait()
    _thread_id = AnyTrait()
    #: Taken by submissions from other threads, and by ``stop()`` to stop
    #: accepting them (``_accepting``): the main thread's own submissions
    #: need neither, since ``stop()`` runs on that thread too.
    _lock = AnyTrait()
    _accepting = Bool(True)
    _dropped = AnyTrait()
    _finalizer = AnyTrait()
    _bookkeeping = AnyTrait()
    #: The TaskOptions of every task (default_timeout), or None.
    _default_options = AnyTrait()

    def __init__(
        self,
        thread_pool: concurrent.futures.Executor | None = None,
        *,
        context: IParallelContext | None = None,
        event_loop: IEventLoop | None = None,
        worker_pool: concurrent.futures.Executor | None = None,
        max_workers: int | None = None,
        default_timeout: float | None = None,
        **traits: Any,
    ) -> None:
        super().__init__(**traits)
        if check_timeout("default_timeout", default_timeout) is not None:
            self._default_options = TaskOptions(self, timeout=default_timeout)
        if thread_pool is not None:
            warnings.warn(
                "TraitsExecutor(thread_pool=...) is deprecated; use worker_pool=...",
                DeprecationWarning,
                stacklevel=2,
            )
            if worker_pool is not None:
                raise TypeError("give worker_pool or thread_pool, not both")
            worker_pool = thread_pool
        if worker_pool is not None and max_workers is not None:
            raise TypeError(
                "give max_workers only when the executor makes its own pool; "
                "size your worker_pool yourself"
            )
        check_max_workers(max_workers)
        if worker_pool is not None and not isinstance(
            worker_pool, concurrent.futures.Executor
        ):
            raise TypeError(
                "worker_pool must be a concurrent.futures.Executor, got "
                f"{worker_pool!r}"
            )
        if context is None:
            context = MultithreadingContext()
            self._owns_context = True
        elif not isinstance(context, IParallelContext):
            raise TypeError(
                f"context must be an IParallelContext, got {context!r}"
            )
        else:
            check_open(context)
        if event_loop is None:
            event_loop = _default_event_loop()
        elif not isinstance(event_loop, IEventLoop):
            raise TypeError(
                f"event_loop must be an IEventLoop (e.g. AsyncioEventLoop()), "
                f"got {event_loop!r}"
            )
        self._context = context
        # The context's cheap per-task flag; a context only registered with
        # IParallelContext may lack cancel_flag(): its event() serves.
        self._new_cancel_flag = getattr(context, "cancel_flag", context.event)
        self._event_loop = event_loop
        if worker_pool is None:
            worker_pool = context.worker_pool(max_workers=max_workers)
            self._owns_worker_pool = True
        self._worker_pool = worker_pool
        # offload's own pools take the task handle as the pool future; in
        # its thread pool, with the thread context's flags, the handle is
        # the task's cancel flag too.
        if isinstance(worker_pool, WorkerThreadPool) and (
            getattr(type(context), "cancel_flag", None) is MultithreadingContext.cancel_flag
        ):
            self._handle_class = ThreadTaskHandle
        elif hasattr(worker_pool, "_offload_submit"):
            self._handle_class = TaskHandle
        else:
            self._handle_class = PoolHandle
        router: IMessageRouter = context.message_router(event_loop)
        #: task id -> future, for the futures not yet done.  What the
        #: router holds of the executor (the event loop holds the router
        #: while it is connected): a dropped executor goes.
        self._lock = threading.Lock()
        self._futures = TaskTable(self._lock)
        router.connect(self._futures.finished)
        self._router = router
        self._bookkeeping = Bookkeeping(self, event_loop, router)
        self._bookkeeping.watch(self._futures)
        # A context only registered with IParallelContext may lack it.
        call_on_close = getattr(context, "call_on_close", None)
        if call_on_close is not None:
            call_on_close(self._context_closed)
        # Looked up once: a property, on the path of every submission.
        self._sender = router.sender
        self._task_ids = itertools.count()
        self._thread = threading.current_thread()
        self._thread_id = threading.get_ident()
        # Dropped before it stopped: release what it owns (see Dropped).
        self._dropped = Dropped(
            f"{type(self).__name__} {id(self):#x}", router,
            worker_pool if self._owns_worker_pool else None,
            context if self._owns_context else None,
        )
        self._finalizer = weakref.finalize(self, self._dropped)
        # At interpreter exit the pools' own exit handlers end the workers.
        self._finalizer.atexit = False
        logger.debug("executor %#x: created on %r", id(self), context)

    # Submitting -------------------------------------------------------------

    def submit(
        self, task: ITaskSpecification, options: TaskOptions | None = None
    ) -> IFuture:
        """Submit a task specification; return its future.

        Call it from any thread: the main thread (the one that made the
        executor and runs its event loop), another thread of the
        application, or a task running on a thread context (a task that
        submits a follow-up task).  ``task.task()`` and ``task.future()``
        are called on the calling thread; the task callable then runs in a
        worker.  The future is returned WAITING, and every change of it
        happens on the main thread, as the event loop delivers the task's
        messages.

        ``submitted`` fires on the main thread: at once for a submission
        made there, else before the task's first message is delivered, so
        that an observer attached to the future from ``submitted`` misses
        nothing.  From another thread, attach observers to the future
        before the main thread can deliver (or from ``submitted``):
        Traits' ``observe`` is not atomic with a notification running on
        another thread.

        Parameters
        ----------
        task : ITaskSpecification
            What to run, and how its future looks.
        options : TaskOptions, optional
            From ``executor.options(...)``: ``executor.submit(task, options)`` is
            ``options.submit(task)``.  Default: the executor's own
            (``default_timeout``).

        Raises
        ------
        RuntimeError
            If the executor is not RUNNING (an offload context closed under
            it stops it, and the message says so).  A submission from
            another thread that races with ``stop()`` or ``shutdown()`` is
            either refused so, or accepted before the stop, which then
            cancels its future and waits for it like any other.
        """
        if options is None:
            options = self._default_options
        else:
            options = options.applied_to(task)
        if threading.get_ident() != self._thread_id:
            return self._submit_from_another_thread(task, options)
        if self._state is not RUNNING:
            raise self._refusal()
        # _prepare's work, inline: this is the path of every task.
        task_id = next(self._task_ids)
        router = self._router
        if options is None:
            handle = self._handle_class(
                router, task_id, self._new_cancel_flag, self._event_loop
            )
            future = task.future(handle)
            router.add_receiver(task_id, future.receive)
        else:
            handle = options.handle(
                self._handle_class, router, task_id, self._new_cancel_flag, self._event_loop
            )
            future = task.future(handle)
            router.add_receiver(task_id, handle.receiver(future.receive))
        runner = TaskRunner(task_id, task.task(), self._sender, handle.flag)
        self._futures[task_id] = future
        try:
            handle.start(self._worker_pool, runner)
        except BaseException:
            router.discard_receiver(task_id)
            del self._futures[task_id]
            raise
        self.submitted = (future, task)
        bookkeeping = self._bookkeeping
        if not bookkeeping.scheduled and len(self._futures) > 1:
            # Published after the batch under way, or one asked for now.  A
            # task submitted alone starts at once, and the batch of its
            # first message publishes: no wake-up of its own (a round trip
            # would pay one more turn of the loop).
            bookkeeping.changed()
        return future

    def options(
        self,
        *,
        timeout: float | None = None,
        priority: int = 0,
        max_progress_rate: float | None = None,
    ) -> TaskOptions:
        """Options for some tasks, without touching their arguments.

        Returns an object to submit through, in place of the executor:
        ``submit_call(executor.options(timeout=5.0), solve, problem)``, or
        ``executor.options(priority=1).submit(task)``.  It may be kept and
        reused.  Call it on the executor's thread.

        Parameters
        ----------
        timeout : float, optional
            Seconds the task may run, from the moment it starts (not
            while it waits for a worker).
            Past it the task is force-cancelled (``cancel(force=True)``:
            its worker process is killed; threads are only asked to stop)
            and its future ends FAILED, with a :class:`TaskTimedOut` as
            ``exception_object``.  The future shows EXECUTING until the
            task has ended.  Default None: the executor's
            ``default_timeout``; ``math.inf``: no limit.
        priority : int, optional
            Of the tasks waiting for a worker, those of higher priority
            start first; equal priorities start first in, first out.
            Default 0, that of every task submitted without options.
        max_progress_rate : float, optional
            Most progress updates a second delivered to the future of a
            ``submit_progress`` or ``submit_steps`` task: the worker keeps
            only the latest report until the next may go, and always sends
            the last one before the task's end.  Default None: every report
            of a progress task (Traits Futures' contract), 25 a second for
            a steps task; ``math.inf``: every report.  A task of another
            kind submitted with it raises ``TypeError``.

        Raises
        ------
        TypeError, ValueError
            If an option has the wrong type or value (the message names it).
        """
        if timeout is None and self._default_options is not None:
            timeout = self._default_options.timeout
        return TaskOptions(
            self, timeout=timeout, priority=priority, max_progress_rate=max_progress_rate
        )

    def _prepare(self, task: ITaskSpecification, options: TaskOptions | None) -> tuple:
        """A new task's id, handle, future, runner and receiver (whoever
        submits: the callers hold what makes it safe)."""
        task_id = next(self._task_ids)
        new_flag = self._new_cancel_flag
        if options is None:
            handle = self._handle_class(self._router, task_id, new_flag, self._event_loop)
            future = task.future(handle)
            receive = future.receive
        else:
            handle = options.handle(
                self._handle_class, self._router, task_id, new_flag, self._event_loop
            )
            future = task.future(handle)
            receive = handle.receiver(future.receive)
        runner = TaskRunner(task_id, task.task(), self._sender, handle.flag)
        return task_id, handle, future, runner, receive

    def _submit_from_another_thread(
        self, task: ITaskSpecification, options: TaskOptions | None
    ) -> IFuture:
        """``submit`` on a thread other than the main one.

        Under the executor's lock, which ``stop()`` takes to stop accepting:
        so a task is either refused, or registered and handed to its pool
        before ``stop()`` looks at the task table (which then cancels it and
        waits for its end).  ``submitted`` is announced through the router,
        queued before the task can send anything, so the main thread fires
        it before delivering the task's first message.
        """
        with self._lock:
            if not self._accepting:
                raise self._refusal()
            task_id, handle, future, runner, receive = self._prepare(task, options)
            router = self._router
            router.add_receiver(
                task_id,
                Announcer(weakref.ref(self), router, task_id, future, receive, task),
            )
            self._futures.others[task_id] = future
            router.inject(task_id, ANNOUNCEMENT)
            try:
                handle.start(self._worker_pool, runner)
            except BaseException:
                router.discard_receiver(task_id)
                del self._futures.others[task_id]
                raise
        return future

    def _refusal(self) -> RuntimeError:
        """The error for a submission to an executor that takes no more."""
        # Another thread may be refused between stop()'s taking the lock
        # and its change of state: the executor is stopping already.
        state = STOPPING if self._state is RUNNING else self._state
        if self._context.closed:
            return RuntimeError(
                f"cannot submit to a TraitsExecutor in state {state!r}: "
                "its context was closed while it ran; shut the executor "
                "down before closing its context, and create a new executor"
            )
        return RuntimeError(
            f"cannot submit to a TraitsExecutor in state {state!r}; "
            "create a new executor"
        )

    def submit_call(self, callable: Any, *args: Any, **kwargs: Any) -> Any:
        """Deprecated: use ``submit_call(executor, callable, ...)``."""
        warnings.warn(
            "TraitsExecutor.submit_call method is deprecated; use the function "
            "submit_call(executor, callable, ...)",
            DeprecationWarning,
            stacklevel=2,
        )
        return submit_call(self, callable, *args, **kwargs)

    def submit_iteration(self, callable: Any, *args: Any, **kwargs: Any) -> Any:
        """Deprecated: use ``submit_iteration(executor, callable, ...)``."""
        warnings.warn(
            "TraitsExecutor.submit_iteration method is deprecated; use the function "
            "submit_iteration(executor, callable, ...)",
            DeprecationWarning,
            stacklevel=2,
        )
        return submit_iteration(self, callable, *args, **kwargs)

    def submit_progress(self, callable: Any, *args: Any, **kwargs: Any) -> Any:
        """Deprecated: use ``submit_progress(executor, callable, ...)``."""
        warnings.warn(
            "TraitsExecutor.submit_progress method is deprecated; use the function "
            "submit_progress(executor, callable, ...)",
            DeprecationWarning,
            stacklevel=2,
        )
        return submit_progress(self, callable, *args, **kwargs)

    # Stopping ---------------------------------------------------------------

    def stop(self) -> None:
        """Cancel every cancellable future and move to STOPPING.

        Call it on the main thread; it returns at once.  The executor becomes
        STOPPED, and releases what it owns, once the event loop (which must
        keep running) has delivered the end of every task: observe
        ``stopped`` to know.

        Raises
        ------
        RuntimeError
            If the executor is not RUNNING, or if called from a thread other
            than the one that made the executor (nothing changes then).
        """
        self._check_thread("stop")
        if self._state is not RUNNING:
            raise RuntimeError(
                f"stop() needs a running executor; this one is {self._state!r}"
            )
        # From here on other threads' submissions are refused; one that got
        # the lock first is in the task table, cancelled below.
        with self._lock:
            self._accepting = False
            self._futures.absorb()
        self._change_state(STOPPING)
        # STOPPED once the last task's end has been delivered.
        self._futures.on_empty = weak_release_if_idle(weakref.ref(self))
        # Stopping is enough: dropped now, it says nothing as it releases.
        self._dropped.stopping = True
        # Waiting tasks first, newest first, then the running ones.  A
        # running task that ends on its cancel frees its worker, which takes
        # the next queued task: had that one not been withdrawn yet, it ran
        # (and ran on, if it ignores cancellation).
        futures = list(reversed(self._futures.values()))
        futures.sort(key=_not_waiting)
        for future in futures:
            future.cancel()
        if not self._futures:
            self._release()

    def shutdown(self, timeout: float | None = None) -> None:
        """Cancel all tasks, wait for them to end, release resources.

        Blocks, delivering the tasks' last messages itself: call it on the
        main thread, at application exit, in a test's tearDown, or from an
        observer (of a future's ``done``, say) while the event loop runs.
        The futures' trait notifications still fire on the calling thread,
        inside this call.  Does nothing if already STOPPED.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait for the tasks to end.  Default: wait as long as
            it takes.

        Raises
        ------
        RuntimeError
            If tasks are still running after ``timeout`` seconds.  Threads
            cannot be stopped: the executor then stays STOPPING and
            ``shutdown`` may be called again.  Worker processes can: if the
            executor owns its pool of processes, it kills them (their
            futures end CANCELLED), becomes STOPPED, and the error says so.
            Also if called from a thread other than the one that made the
            executor (nothing changes then).
        Exception
            The first exception an observer raised while ``shutdown``
            delivered, if Traits' exception handler re-raises them
            (``push_exception_handler(reraise_exceptions=True)``): raised
            once the shutdown has gone to its end.  ``SystemExit`` and
            ``KeyboardInterrupt`` propagate at once; the executor then stays
            STOPPING, and ``shutdown`` may be called again.
        """
        self._check_thread("shutdown")
        if self._state is STOPPED:
            return
        if self._state is RUNNING:
            self.stop()
        deadline = None if timeout is None else time.monotonic() + timeout
        error = self._deliver_until_done(deadline)
        if not self._futures:
            # Stopped already, unless the last task ended in a delivery that
            # is still running (this is one of its observers).
            self._release_if_idle()
            if error is not None:
                raise error
            return
        running = len(self._futures)
        message = (
            f"shutdown timed out after {timeout} seconds with {running} "
            "tasks still running; they ignore cancellation."
        )
        terminate = getattr(self._worker_pool, "terminate", None)
        if self._owns_worker_pool and terminate is not None:
            terminate("the executor's shutdown timed out")
            error = self._deliver_until_done(
                time.monotonic() + _TERMINATE_TIMEOUT, error
            )
            if not self._futures:
                self._release_if_idle()
                raise RuntimeError(
                    f"{message}  The executor killed its worker processes to "
                    "end them, and is stopped"
                ) from error
        raise RuntimeError(
            f"{message}  The executor stays 'stopping'; call shutdown again "
            "to keep waiting"
        ) from error

    def _deliver_until_done(
        self, deadline: float | None, error: Exception | None = None
    ) -> Exception | None:
        """Deliver messages (without the event loop) until no task runs.

        Returns the first exception an observer raised meanwhile (Traits
        re-raises them when told to), or ``error`` if that came first: the
        caller raises it once done, so that one failing observer neither
        hides the shutdown's outcome nor stops the other deliveries.
        """
        router = self._router
        while self._futures:
            if deadline is None:
                wait = 1.0
            else:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
            try:
                router.deliver_blocking(min(wait, 1.0))
            except Exception as exc:  # noqa: BLE001 - raised by shutdown() at its end
                if error is None:
                    error = exc
        return error

    def _check_thread(self, method: str) -> None:
        """Raise RuntimeError unless called on the executor's own thread."""
        if threading.get_ident() != self._thread_id:
            raise RuntimeError(
                f"{method}() must be called from the thread that made the "
                f"TraitsExecutor ({self._thread.name!r}, which runs its event "
                f"loop), not from {threading.current_thread().name!r}; from "
                "another thread, ask that thread to call it (for instance "
                "through its event loop)"
            )

    # Private ----------------------------------------------------------------

    def _get_state(self) -> str:
        return self._state

    def _get_running(self) -> bool:
        return self._state is RUNNING

    def _get_stopped(self) -> bool:
        return self._state is STOPPED

    def _get_futures(self) -> list[IFuture]:
        return self._futures.pending()

    def _get_counts(self) -> dict[str, int]:
        return self._bookkeeping.counts(self._futures.pending())

    def _change_state(self, new: str) -> None:
        old = self._state
        self._state = new
        logger.debug("executor %#x: %s -> %s", id(self), old, new)
        notify = self.trait_property_changed  # type: ignore[attr-defined]
        notify("state", old, new)
        if (old is RUNNING) != (new is RUNNING):
            notify("running", old is RUNNING, new is RUNNING)
        if (old is STOPPED) != (new is STOPPED):
            notify("stopped", old is STOPPED, new is STOPPED)

    def _context_closed(self) -> None:
        """The context was closed under this executor: stop, since no task
        can run any more (called by ``context.close()``, main thread)."""
        if self._state is RUNNING and threading.get_ident() == self._thread_id:
            logger.debug("executor %#x: its context was closed", id(self))
            self.stop()

    def _release_if_idle(self) -> None:
        if self._state is STOPPING and not self._futures:
            self._release()

    def _release(self) -> None:
        self._finalizer.detach()
        self._router.disconnect()
        if self._owns_worker_pool:
            self._worker_pool.shutdown(wait=True)
        if self._owns_context:
            self._context.close()
        self._change_state(STOPPED)


def _not_waiting(future: IFuture) -> bool:
    # Futures registered with IFuture need not have a state.
    return getattr(future, "state", None) != WAITING
