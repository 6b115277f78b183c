"""Per-task options: ``executor.options(timeout=..., priority=...)``.

``TraitsExecutor.options()`` returns a :class:`TaskOptions`, which has a
``submit(task)`` like the executor's, so it goes wherever an executor
does: ``submit_call(executor.options(timeout=5.0), solve, problem)``.  The
options never mix with the task's own arguments.

Tasks submitted without options take none of this path: the executor
makes its plain handle, and this module's handles (subclasses of the
plain ones) exist only for tasks that have options.

Adding an option: give :class:`TaskOptions` a keyword (with a default that
changes nothing), a check in :meth:`TaskOptions.__init__`, and say in
:meth:`TaskOptions.active` whether it needs the option handles; then use
it in the handles, or (for what the worker applies, such as
``max_progress_rate``) set it on the task specification in :meth:`submit`.

What runs where::

    main thread                 a worker / pool thread        timer thread
    -----------                 ----------------------        ------------
    submit_call(options, ...)
      options.submit(task)
        executor makes an
        OptionsTaskHandle ───▶  takes the task: arm the limit ──▶ wait
                                task ends: disarm        ◀────── or expire:
                                                                 TIMED_OUT to
                                                                 the future,
                                                                 cancel flag,
                                                                 force (kill)
"""

from __future__ import annotations

import math
import time
from typing import Any

from offload._executor.handles import PoolHandle, TaskHandle
from offload._executor.timer import TIMER
from offload._routing.protocol import FINAL_KINDS, STARTED, TIMED_OUT, raised_message


class TaskTimedOut(TimeoutError):
    """The failure of a task that overran its time limit.

    A future whose task runs longer than its ``timeout`` (see
    ``TraitsExecutor.options`` and ``TraitsExecutor(default_timeout=...)``)
    ends FAILED, with this as its ``exception_object``; its message names
    the limit.  It is made on the executor's timer thread, and seen on the
    main thread; the task itself never sees it (it is force-cancelled).
    """


# Shown by future.exception[0] as offload.api.TaskTimedOut, its public name.
TaskTimedOut.__module__ = "offload.api"


def check_timeout(name: str, value: Any) -> float | None:
    """A time limit: None, or seconds (> 0; ``math.inf``: no limit)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be a number of seconds or None, got {value!r} of "
            f"type {type(value).__name__}"
        )
    if not value > 0:  # also NaN
        raise ValueError(
            f"{name} must be more than 0 seconds (or None for the default, "
            f"math.inf for no limit), got {value!r}"
        )
    return None if math.isinf(value) else float(value)


def check_rate(value: Any) -> float | None:
    """A progress rate: None, or updates a second (> 0; ``math.inf``: all)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"max_progress_rate must be a number of updates a second or None, "
            f"got {value!r} of type {type(value).__name__}"
        )
    if not value > 0:  # also NaN
        raise ValueError(
            f"max_progress_rate must be more than 0 updates a second (None for "
            f"the task kind's default, math.inf for every update), got {value!r}"
        )
    return float(value)


class TaskOptions:
    """Options for the tasks submitted through it; made by
    ``TraitsExecutor.options()``.

    Pass it to ``submit_call``, ``submit_iteration``, ``submit_progress``
    or ``submit_steps`` in place of the executor, or call its
    :meth:`submit` as you would the executor's.  It may be kept and used
    for many tasks.  Use it on the thread where you use the executor.

    Attributes
    ----------
    executor : TraitsExecutor
        Where the tasks go.
    timeout : float or None
        The time limit in seconds, from the moment the task starts; None:
        no limit.  Where the clock starts exactly: see :class:`OptionsTaskHandle`.
    priority : int
        Tasks of higher priority start first; equal priorities start in
        the order submitted.
    max_progress_rate : float or None
        Most progress updates a second delivered to the future of a
        progress or steps task (coalesced in the worker to the latest
        value; the last one before the end is never dropped).  None: the
        task kind's default (every report for ``submit_progress``, 25 a
        second for ``submit_steps``); ``math.inf``: every report.
    """

    __slots__ = ("executor", "timeout", "priority", "max_progress_rate")

    def __init__(
        self,
        executor: Any,
        *,
        timeout: Any = None,
        priority: Any = 0,
        max_progress_rate: Any = None,
    ) -> None:
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(
                f"priority must be an int (higher starts first), got {priority!r} "
                f"of type {type(priority).__name__}"
            )
        self.executor = executor
        self.timeout = check_timeout("timeout", timeout)
        self.priority = priority
        self.max_progress_rate = check_rate(max_progress_rate)

    @property
    def active(self) -> bool:
        """True if any option changes how a task runs."""
        return self.timeout is not None or self.priority != 0

    def submit(self, task: Any) -> Any:
        """Submit ``task`` (an ``ITaskSpecification``) with these options;
        return its future.  Like ``TraitsExecutor.submit``, whose rules and
        errors apply."""
        return self.executor.submit(task, self)

    def applied_to(self, task: Any) -> TaskOptions | None:
        """Set ``task``'s progress rate if asked; these options if the task
        needs the executor's option handles, else None (the submitting
        thread, before the task is registered).

        Raises
        ------
        TypeError
            If ``max_progress_rate`` was given and ``task`` reports no
            progress.
        """
        rate = self.max_progress_rate
        if rate is not None:
            if not hasattr(task, "max_progress_rate"):
                raise TypeError(
                    "max_progress_rate applies to tasks that report progress "
                    "(submit_progress, submit_steps), not to a "
                    f"{type(task).__name__}; submit it through options "
                    "without max_progress_rate"
                )
            task.max_progress_rate = None if math.isinf(rate) else rate
        return self if self.active else None

    def handle(
        self, plain: type, router: Any, task_id: int, new_flag: Any, event_loop: Any
    ) -> Any:
        """The executor's handle of one task with these options (the
        submitting thread); ``plain`` is the class it would have had."""
        cls = OptionsTaskHandle if issubclass(plain, TaskHandle) else OptionsPoolHandle
        handle = cls(router, task_id, new_flag, event_loop)
        handle.timeout = self.timeout
        handle.priority = self.priority
        return handle

    def __repr__(self) -> str:
        return (
            f"<TaskOptions timeout={self.timeout!r} priority={self.priority!r} "
            f"max_progress_rate={self.max_progress_rate!r}>"
        )


def _expire(handle: Any) -> None:
    """The time limit of ``handle``'s task is over (timer thread).

    The future learns first (TIMED_OUT: it will end FAILED whatever comes
    next); then the task is asked to stop, and forced where the pool can.
    """
    handle.armed = None
    error = TaskTimedOut(
        f"the task ran longer than its time limit of {handle.timeout:g} seconds"
    )
    handle.router.inject(handle.task_id, raised_message(error, TIMED_OUT))
    handle.flag.set()
    handle.force()


def _arm(handle: Any) -> None:
    handle.armed = TIMER.call_at(time.monotonic() + handle.timeout, lambda: _expire(handle))


def _timed_receiver(handle: Any, receive: Any) -> Any:
    """``receive`` of a task with a time limit: arms it as the future
    receives STARTED (unless the pool armed it already), disarms it as the
    future receives the task's final message.  Main thread, in the task's
    order, so the two never race."""

    def receive_and_time(message: tuple) -> bool:
        kind = message[0]
        if kind == STARTED:
            if handle.armed is None and not handle.arms_when_taken:
                _arm(handle)
        elif kind in FINAL_KINDS:
            armed = handle.armed
            if armed is not None:
                handle.armed = None
                TIMER.cancel(armed)
        return receive(message)

    return receive_and_time


class OptionsTaskHandle(TaskHandle):
    """A :class:`TaskHandle` with a time limit and a priority.

    Where the pool takes a task in the thread that runs it (offload's
    thread pool says so with ``starts_when_taken``), the limit is armed
    there, in ``set_running_or_notify_cancel``, right before the task runs.
    Elsewhere (the process pool takes a task as it sends it to a worker,
    which may be slow to read it), it is armed as the future receives
    STARTED: a little late, never early.  It is disarmed as the task ends.
    """

    __slots__ = ("timeout", "priority", "armed", "arms_when_taken")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.timeout: float | None = None
        self.priority = 0
        self.armed: list | None = None
        self.arms_when_taken = False

    def start(self, pool: Any, runner: Any) -> None:
        self.pool = pool
        self.arms_when_taken = getattr(pool, "starts_when_taken", False)
        submit = getattr(pool, "_offload_submit_priority", None)
        if self.priority and submit is not None:
            submit(self, runner, self.priority)
        else:
            pool._offload_submit(self, runner)

    def receiver(self, receive: Any) -> Any:
        return receive if self.timeout is None else _timed_receiver(self, receive)

    def set_running_or_notify_cancel(self) -> bool:
        taken = super().set_running_or_notify_cancel()
        if taken and self.timeout is not None and self.arms_when_taken:
            _arm(self)
        return taken

    def set_result(self, result: Any) -> None:
        self._disarm()
        super().set_result(result)

    def set_exception(self, exc: BaseException) -> None:
        self._disarm()
        super().set_exception(exc)

    def _disarm(self) -> None:
        armed = self.armed
        if armed is not None:
            self.armed = None
            TIMER.cancel(armed)


class OptionsPoolHandle(PoolHandle):
    """A :class:`PoolHandle` with a time limit and a priority: for pools
    that are not offload's own (Dask's, or one the application gives).

    Such a pool does not say when a worker takes the task, so the limit is
    armed when the future receives STARTED, and disarmed when it receives
    the task's final message (both on the main thread).
    """

    __slots__ = ("timeout", "priority", "armed")

    #: Such a pool never says when the task starts.
    arms_when_taken = False

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.timeout: float | None = None
        self.priority = 0
        self.armed: list | None = None

    def start(self, pool: Any, runner: Any) -> None:
        submit = getattr(pool, "_offload_submit_priority", None)
        if not self.priority or submit is None:
            super().start(pool, runner)
            return
        self.pool = pool
        pool_future = submit(runner, self.priority)
        self.pool_future = pool_future
        pool_future.add_done_callback(self.pool_future_done)

    def receiver(self, receive: Any) -> Any:
        return receive if self.timeout is None else _timed_receiver(self, receive)
