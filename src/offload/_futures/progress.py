"""Background calls that report progress through a ``progress`` argument."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from traits.api import Event

from offload._futures.function_task import FunctionSpecification, FunctionTask
from offload._futures.pausing import PausableFuture, PausePoint, attention_of
from offload._futures.steps_reporter import schedule_flush
from offload._futures.update_callbacks import UpdateCallbacks

_now = time.monotonic

#: Message kind of one progress report.
PROGRESS = "progress"


class ProgressFuture(UpdateCallbacks, PausableFuture):
    """Future of :func:`~offload.api.submit_progress`.

    ``progress`` fires on the main thread with each value the task reports,
    in order; then callables added with ``add_update_callback`` are called
    with the future and the value.  ``pause()`` stops the task in its next
    ``progress(...)`` call, before that report is sent, until ``resume()``
    or ``cancel()`` (then the call raises
    :class:`~offload.api.TaskCancelled`).
    """

    #: Fired with each ``progress(info)`` of the task (main thread, in order).
    progress = Event()

    def _process_progress(self, info: Any) -> None:
        self.progress = info
        callbacks = self._update_callbacks
        if callbacks is not None:
            if callbacks.__class__ is list:
                self._run_update_callbacks(info)
            else:
                callbacks(self, info)  # one callable: the usual case, inline


class ProgressReporter:
    """The ``progress`` callable a task receives.  Runs in the worker."""

    __slots__ = ("_send", "_cancelled", "_attention", "_point")

    def __init__(self, send: Callable[[tuple], None], cancelled: Callable[[], bool]) -> None:
        self._send = send
        self._cancelled = cancelled
        # As cheap as cancelled(): true once cancelled or paused; only then
        # is a pause point made.
        self._attention = attention_of(cancelled)
        self._point: PausePoint | None = None

    def __call__(self, info: Any = None) -> None:
        """Report ``info``.

        Blocks while the future is paused (before sending ``info``); raises
        :class:`TaskCancelled` once cancellation was asked for.
        """
        if self._attention():
            point = self._point
            if point is None:
                point = self._point = PausePoint(self._cancelled)
            point.raise_if_cancelled()
        self._send((PROGRESS, info))

    def cancelled(self) -> bool:
        """True once cancellation was asked for (without raising or pausing)."""
        return self._cancelled()

    def close(self) -> None:
        """The task is over: let go of its pause gate (worker)."""
        point = self._point
        if point is not None:
            point.close()


class CoalescingProgressReporter(ProgressReporter):
    """The ``progress`` callable of a task with a ``max_progress_rate``.

    Sends a report at once if the last one went at least ``1 / max_rate``
    seconds ago; otherwise keeps it (a later report replaces it), and this
    process's flusher thread (the steps reporters') sends the one kept at
    its due time, so that a report followed by a long silence is still
    shown.  When the task ends, whatever the way, the kept report goes
    before the end: the last value reported is never dropped.
    """

    __slots__ = ("_interval", "_next_send", "_held", "_value", "_closed", "_lock")

    def __init__(
        self, send: Callable[[tuple], None], cancelled: Callable[[], bool], max_rate: float
    ) -> None:
        super().__init__(send, cancelled)
        self._interval = 1.0 / max_rate
        #: Clock time from which the next report may be sent at once.
        self._next_send = _now()
        #: A report waits for its due time: ``_value``.
        self._held = False
        self._value: Any = None
        #: The task ended: nothing more is sent.
        self._closed = False
        #: Guards the state against the flusher thread.
        self._lock = threading.Lock()

    def __call__(self, info: Any = None) -> None:
        """Report ``info`` (or keep it for its due time); see
        :meth:`ProgressReporter.__call__`."""
        if self._attention():
            point = self._point
            if point is None:
                point = self._point = PausePoint(self._cancelled)
            point.raise_if_cancelled()
        with self._lock:
            self._value = info
            now = _now()
            if now >= self._next_send:
                self._send_now(now)
            elif not self._held:
                self._held = True
                schedule_flush(self._next_send, self)

    @property
    def ended(self) -> bool:
        """The task is over: nothing is left to flush (see ``_Flusher``)."""
        return self._closed

    def flush_due(self) -> None:
        """Send the kept report (the flusher thread, at its due time)."""
        with self._lock:
            now = _now()
            if self._held and not self._closed and now >= self._next_send:
                self._send_now(now)

    def close(self) -> None:
        """The task is over: send the kept report, then nothing more."""
        with self._lock:
            if self._held:
                self._send_now(_now())
            self._closed = True
        super().close()

    def _send_now(self, now: float) -> None:
        # With the lock held.
        self._held = False
        self._next_send = now + self._interval
        value, self._value = self._value, None
        self._send((PROGRESS, value))


class ProgressTask(FunctionTask):
    """Worker side of a progress call."""

    __slots__ = ()

    def __call__(self, send: Callable[[tuple], None], cancelled: Callable[[], bool]) -> Any:
        reporter = ProgressReporter(send, cancelled)
        try:
            return self.callable(*self.args, progress=reporter, **self.kwargs)
        finally:
            reporter.close()


class CoalescingProgressTask(FunctionTask):
    """Worker side of a progress call with a ``max_progress_rate``."""

    __slots__ = ("max_rate",)

    def __init__(
        self, callable: Callable[..., Any], args: tuple, kwargs: dict, max_rate: float
    ) -> None:
        super().__init__(callable, args, kwargs)
        self.max_rate = max_rate

    def __getstate__(self) -> tuple:
        return (self.callable, self.args, self.kwargs, self.max_rate)

    def __setstate__(self, state: tuple) -> None:
        self.callable, self.args, self.kwargs, self.max_rate = state

    def __call__(self, send: Callable[[tuple], None], cancelled: Callable[[], bool]) -> Any:
        reporter = CoalescingProgressReporter(send, cancelled, self.max_rate)
        try:
            return self.callable(*self.args, progress=reporter, **self.kwargs)
        finally:
            reporter.close()


class BackgroundProgress(FunctionSpecification):
    """Specification of a progress call.

    ``max_progress_rate`` (None: every report is delivered, Traits Futures'
    contract) is set by ``executor.options(max_progress_rate=...)``.
    """

    __slots__ = ("max_progress_rate",)
    task_class = ProgressTask
    future_class = ProgressFuture

    def __init__(
        self, callable: Callable[..., Any], args: tuple = (), kwargs: dict | None = None
    ) -> None:
        if kwargs and "progress" in kwargs:
            raise TypeError(
                "submit_progress passes its own 'progress' argument to the "
                "callable; do not pass 'progress' yourself"
            )
        super().__init__(callable, args, kwargs)
        self.max_progress_rate: float | None = None

    def task(self) -> FunctionTask:
        rate = self.max_progress_rate
        if rate is None:
            return ProgressTask(self.callable, self.args, self.kwargs)
        return CoalescingProgressTask(self.callable, self.args, self.kwargs, rate)
