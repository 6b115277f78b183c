"""Background calls that report progress through a ``progress`` argument."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from traits.api import Event

from offload._futures.function_task import FunctionSpecification, FunctionTask
from offload._futures.pausing import PausableFuture, PausePoint, attention_of

#: Message kind of one progress report.
PROGRESS = "progress"


class ProgressFuture(PausableFuture):
    """Future of :func:`~offload.api.submit_progress`.

    ``progress`` fires on the main thread with each value the task reports,
    in order.  ``pause()`` stops the task in its next ``progress(...)``
    call, before that report is sent, until ``resume()`` or ``cancel()``
    (then the call raises :class:`~offload.api.TaskCancelled`).
    """

    #: Fired with each ``progress(info)`` of the task (main thread, in order).
    progress = Event()

    def _process_progress(self, info: Any) -> None:
        self.progress = info


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


class ProgressTask(FunctionTask):
    """Worker side of a progress call."""

    __slots__ = ()

    def __call__(self, send: Callable[[tuple], None], cancelled: Callable[[], bool]) -> Any:
        reporter = ProgressReporter(send, cancelled)
        try:
            return self.callable(*self.args, progress=reporter, **self.kwargs)
        finally:
            reporter.close()


class BackgroundProgress(FunctionSpecification):
    """Specification of a progress call."""

    __slots__ = ()
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
