"""One future as a row: name, state, bar (percentage and message), elapsed.

Shared by :class:`~offload.ui.ActivityView` (one row per future) and
:func:`~offload.ui.run_with_progress` (one row, bigger).  Everything here
runs on the main thread.

A row follows its future's ``state`` at once; what a running task reports
(steps, progress) only marks the row stale, and the view refreshes stale
rows on a timer, a few times a second: a progress flood of thousands of
messages a second then costs a GUI a few repaints, not thousands.
"""

from __future__ import annotations

import time
from typing import Any

from traits.api import Any as AnyTrait
from traits.api import Bool, Button, HasStrictTraits, Str, Tuple, observe

from offload._futures.group import read_progress
from offload._futures.progress import ProgressFuture
from offload._futures.states import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXECUTING,
    FAILED,
    WAITING,
)
from offload._futures.steps import StepsFuture

_STATE_TEXT = {
    WAITING: "Waiting",
    EXECUTING: "Running",
    COMPLETED: "Completed",
    FAILED: "Failed",
    CANCELLING: "Cancelling",
    CANCELLED: "Cancelled",
}


class FutureRow(HasStrictTraits):
    """What a view shows of one future."""

    #: The future shown.
    future = AnyTrait()

    #: Its name: given, or a steps task's first message, or the task's
    #: callable, or the future's class.
    name = Str()

    #: Its state, as a word ("Running", "Failed"...).
    state = Str()

    #: ``(fraction or None, text)`` for the bar: "42% · message".
    bar = Tuple(AnyTrait(), Str())

    #: Time since it started running ("3.2 s", "1:05"); empty before.
    elapsed = Str()

    #: Whether Cancel does something now.
    cancellable = Bool()

    #: Asks the future to stop.
    cancel = Button("Cancel")

    #: Done: COMPLETED, FAILED or CANCELLED.
    done = Bool()

    # Private ----------------------------------------------------------------

    #: Main-thread clock when it was seen running, and done.
    _started = AnyTrait(None)
    _ended = AnyTrait(None)
    #: Last fraction and message a progress future reported.
    _fraction = AnyTrait(None)
    _message = AnyTrait(None)
    #: Something was reported since the last refresh.
    stale = Bool(False)

    def __init__(
        self, future: Any, name: str = "", callable_name: str = "", **traits: Any
    ) -> None:
        super().__init__(future=future, **traits)
        self.name = name or _name_of(future, callable_name)
        if future.state != WAITING:
            # Running already (or over) when the row was made.
            self._started = time.monotonic()
        future.observe(self._state_changed, "state")
        if isinstance(future, StepsFuture):
            future.observe(self._reported, "complete,message")
        elif isinstance(future, ProgressFuture):
            future.observe(self._progress_reported, "progress")
        self._state_changed(None)

    def refresh(self) -> None:
        """Show what the future says now (the view's timer, main thread)."""
        self.stale = False
        self.bar = describe(self.future, self._fraction, self._message)
        self.elapsed = self._elapsed_text()

    def forget(self) -> None:
        """Stop following the future (the row is removed)."""
        future = self.future
        future.observe(self._state_changed, "state", remove=True)
        if isinstance(future, StepsFuture):
            future.observe(self._reported, "complete,message", remove=True)
        elif isinstance(future, ProgressFuture):
            future.observe(self._progress_reported, "progress", remove=True)

    @observe("cancel")
    def _cancel_future(self, event: Any) -> None:
        self.future.cancel()

    def _state_changed(self, event: Any) -> None:
        future = self.future
        state = future.state
        if state == EXECUTING and self._started is None:
            self._started = time.monotonic()
        if future.done and self._ended is None:
            self._ended = time.monotonic()
            if self._started is None:
                self._started = self._ended
        self.state = _STATE_TEXT.get(state, state)
        self.cancellable = future.cancellable
        self.done = future.done
        self.refresh()

    def _reported(self, event: Any) -> None:
        self.stale = True

    def _progress_reported(self, event: Any) -> None:
        fraction, message = read_progress(event.new)
        if fraction is not None:
            self._fraction = fraction
        if message is not None:
            self._message = message
        self.stale = True

    def _elapsed_text(self) -> str:
        started = self._started
        if started is None:
            return ""
        end = self._ended if self._ended is not None else time.monotonic()
        return format_seconds(end - started)


def describe(future: Any, fraction: float | None = None, message: str | None = None) -> tuple:
    """``(fraction or None, text)`` for the bar of ``future``.

    ``fraction`` and ``message`` are what a progress future last reported.
    """
    if isinstance(future, StepsFuture):
        fraction = future.fraction if future.total > 0 else None
        message = future.message
    state = future.state
    if state == COMPLETED:
        return 1.0, _join("Completed", message)
    if state == FAILED:
        return fraction or 0.0, f"Failed: {future.exception[1]}"
    if state == CANCELLED:
        return fraction or 0.0, "Cancelled"
    if state == CANCELLING:
        return fraction or 0.0, "Cancelling..."
    if state == WAITING:
        return 0.0, "Waiting"
    if fraction is None:
        return None, message or "Running"
    return fraction, _join(f"{fraction:.0%}", message)


def _join(first: str, message: str | None) -> str:
    return f"{first} · {message}" if message else first


def _name_of(future: Any, callable_name: str) -> str:
    if isinstance(future, StepsFuture) and future._first_message:
        return future._first_message
    return callable_name or type(future).__name__


def format_seconds(seconds: float) -> str:
    """"0.4 s", "12 s", "1:05", "1:02:03"."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}:{secs:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def name_of_task(task: Any) -> str:
    """The name of a task specification's callable, or ''."""
    callable = getattr(task, "callable", None)
    if callable is None:
        return ""
    return getattr(callable, "__qualname__", None) or getattr(callable, "__name__", "") or ""
