"""Background calls that report progress through a ``progress`` argument."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from traits.api import Event

from offload._futures.base import BaseFuture, TaskCancelled
from offload._futures.function_task import FunctionSpecification, FunctionTask

#: Message kind of one progress report.
PROGRESS = "progress"


class ProgressFuture(BaseFuture):
    """Future of :func:`~offload.api.submit_progress`.

    ``progress`` fires on the main thread with each value the task reports,
    in order.
    """

    #: Fired with each ``progress(info)`` of the task (main thread, in order).
    progress = Event()

    def _process_progress(self, info: Any) -> None:
        self.progress = info


class ProgressReporter:
    """The ``progress`` callable a task receives.  Runs in the worker."""

    __slots__ = ("_send", "_cancelled")

    def __init__(self, send: Callable[[tuple], None], cancelled: Callable[[], bool]) -> None:
        self._send = send
        self._cancelled = cancelled

    def __call__(self, info: Any = None) -> None:
        """Report ``info``; raises :class:`TaskCancelled` once cancelled."""
        if self._cancelled():
            raise TaskCancelled("the task was cancelled")
        self._send((PROGRESS, info))

    def cancelled(self) -> bool:
        """True once cancellation was asked for (without raising)."""
        return self._cancelled()


class ProgressTask(FunctionTask):
    """Worker side of a progress call."""

    __slots__ = ()

    def __call__(self, send: Callable[[tuple], None], cancelled: Callable[[], bool]) -> Any:
        reporter = ProgressReporter(send, cancelled)
        return self.callable(*self.args, progress=reporter, **self.kwargs)


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
