"""Steps tasks: work in counted units, reported as ``total``, ``complete``
and ``message`` on a future (Traits Futures' unreleased steps task).

The worker side, and how its updates are coalesced to at most
``max_rate`` a second, is in ``offload._futures.steps_reporter``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from traits.api import Any as AnyTrait
from traits.api import Float, Int, Property, Str, Union

from offload._futures.base import IFuture
from offload._futures.function_task import FunctionSpecification, FunctionTask
from offload._futures.pausing import PausableFuture
from offload._futures.steps_reporter import (
    DEFAULT_MAX_RATE,
    StepsReporter,
    reporter_checks,
)
from offload._futures.update_callbacks import UpdateCallbacks


class StepsFuture(UpdateCallbacks, PausableFuture):
    """Future of :func:`~offload.api.submit_steps`.

    Every trait below is read-only and changes, and notifies, on the main
    thread, at most ``max_rate`` times a second (25 by default): updates
    the task makes faster than that are coalesced in the worker, the
    latest one winning.  The last update the task made is always delivered
    before ``done`` fires.

    Callables added with ``add_update_callback`` are called with the
    future after each update's notifications.

    ``pause()`` stops the task in its next ``reporter.step()`` or
    ``reporter.stop()`` call, before that step starts, until ``resume()``
    or ``cancel()`` (then the call raises
    :class:`~offload.api.TaskCancelled`).
    """

    #: Units of work of the whole task, as given to ``submit_steps`` (0 if
    #: unknown).
    total = Property(Int())

    #: Units of work completed: the sizes of the steps that are over (a
    #: step is over once the next ``step`` or ``stop`` starts).
    complete = Property(Int())

    #: The message of the current step (at first, the one given to
    #: ``submit_steps``; at the end, the one given to ``stop``).
    message = Property(Str())

    #: ``complete / total``, from 0.0 to 1.0 (0.0 while ``total`` is 0).
    fraction = Property(Float())

    #: Estimated seconds of work left, from the pace of the steps completed
    #: so far (measured in the worker); None until a step has completed.
    #: Estimated at each update, not counted down between them.
    remaining_time = Property(Union(None, Float()))

    # Private traits ---------------------------------------------------------

    _total = AnyTrait(0)
    _complete = AnyTrait(0)
    _message = AnyTrait("")
    _remaining_time = AnyTrait(None)

    #: The message given to ``submit_steps``: the task's description, which
    #: offload.ui shows as its name.
    _first_message = AnyTrait("")

    def _get_total(self) -> int:
        return self._total

    def _get_complete(self) -> int:
        return self._complete

    def _get_message(self) -> str:
        return self._message

    def _get_fraction(self) -> float:
        total = self._total
        if total <= 0:
            return 0.0
        return min(self._complete / total, 1.0)

    def _running_fraction(self) -> float | None:
        """``fraction`` while the task runs with a known total, else None
        (what a FutureGroup reads once per batch: one call, not three)."""
        total = self._total
        if total <= 0 or self._get_done():
            return None
        return min(self._complete / total, 1.0)

    def _get_remaining_time(self) -> float | None:
        return self._remaining_time

    def _process_steps(self, update: tuple[int, str, float]) -> None:
        complete, message, elapsed = update
        old_complete, old_message = self._complete, self._message
        old_fraction, old_remaining = self._get_fraction(), self._remaining_time
        self._complete, self._message = complete, message
        self._remaining_time = remaining = _estimate(self._total, complete, elapsed)
        notify = self.trait_property_changed  # type: ignore[attr-defined]
        if complete != old_complete:
            notify("complete", old_complete, complete)
            fraction = self._get_fraction()
            if fraction != old_fraction:
                notify("fraction", old_fraction, fraction)
        if message != old_message:
            notify("message", old_message, message)
        if remaining != old_remaining:
            notify("remaining_time", old_remaining, remaining)
        callbacks = self._update_callbacks
        if callbacks is not None:
            if callbacks.__class__ is list:
                self._run_update_callbacks()
            else:
                callbacks(self)  # one callable: the usual case, inline


def _estimate(total: int, complete: int, elapsed: float) -> float | None:
    """Seconds left at the pace so far, or None if there is no pace yet."""
    if complete >= total > 0:
        return 0.0
    if complete <= 0 or total <= 0 or elapsed <= 0.0:
        return None
    return elapsed * (total - complete) / complete


class StepsTask(FunctionTask):
    """Worker side: call the callable with a ``reporter``; flush it at the end."""

    __slots__ = ("message", "max_rate")

    def __init__(
        self,
        callable: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        message: str = "",
        max_rate: float | None = DEFAULT_MAX_RATE,
    ) -> None:
        super().__init__(callable, args, kwargs)
        self.message = message
        self.max_rate = max_rate

    def __getstate__(self) -> tuple:
        return (self.callable, self.args, self.kwargs, self.message, self.max_rate)

    def __setstate__(self, state: tuple) -> None:
        self.callable, self.args, self.kwargs, self.message, self.max_rate = state

    def __call__(self, send: Callable[[tuple], None], cancelled: Callable[[], bool]) -> Any:
        reporter = StepsReporter(send, cancelled, self.message, self.max_rate)
        try:
            return self.callable(*self.args, reporter=reporter, **self.kwargs)
        finally:
            # Before the task's end is sent: the last update is never lost.
            reporter.close()


class BackgroundSteps(FunctionSpecification):
    """Specification of a steps task; see :func:`~offload.api.submit_steps`.

    Parameters
    ----------
    total : int
        Units of work of the whole task (>= 0; 0 if unknown).
    message : str
        The message shown until the task's first step.
    callable : callable
        Called in the worker with a ``reporter`` keyword argument.
    args, kwargs
        Its other arguments.
    max_rate : float or None, optional
        Most updates a second delivered to the future (coalesced in the
        worker, the latest winning, the last one always sent); None for
        every update.  Default 25.
    """

    __slots__ = ("total", "message", "max_rate")
    task_class = StepsTask
    future_class = StepsFuture

    def __init__(
        self,
        total: int,
        message: str,
        callable: Callable[..., Any],
        args: tuple = (),
        kwargs: dict | None = None,
        *,
        max_rate: float | None = DEFAULT_MAX_RATE,
    ) -> None:
        reporter_checks(total, message)
        if kwargs and "reporter" in kwargs:
            raise TypeError(
                "submit_steps passes its own 'reporter' argument to the "
                "callable; do not pass 'reporter' yourself"
            )
        if max_rate is not None and not (
            isinstance(max_rate, (int, float)) and max_rate > 0
        ):
            raise ValueError(
                f"max_rate must be a number of updates per second > 0, or None "
                f"for every update; got {max_rate!r}"
            )
        super().__init__(callable, args, kwargs)
        self.total = total
        self.message = message
        self.max_rate = max_rate

    @property
    def max_progress_rate(self) -> float | None:
        """``max_rate``, by the name of ``executor.options(max_progress_rate=...)``."""
        return self.max_rate

    @max_progress_rate.setter
    def max_progress_rate(self, rate: float | None) -> None:
        self.max_rate = rate

    def task(self) -> StepsTask:
        return StepsTask(self.callable, self.args, self.kwargs, self.message, self.max_rate)

    def future(self, cancel: Callable[[], None]) -> IFuture:
        return StepsFuture(  # type: ignore[return-value]
            _cancel=cancel, _total=self.total, _message=self.message,
            _first_message=self.message,
        )
