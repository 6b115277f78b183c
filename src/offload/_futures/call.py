"""Background calls: run ``callable(*args, **kwargs)`` once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from offload._futures.base import BaseFuture
from offload._futures.function_task import FunctionSpecification, FunctionTask


class CallFuture(BaseFuture):
    """Future of :func:`~offload.api.submit_call`: state, result, exception.

    Adds nothing to :class:`~offload.api.BaseFuture`; every trait of it
    changes, and notifies, on the main thread.
    """


class CallTask(FunctionTask):
    """Worker side of a background call."""

    __slots__ = ()

    def __call__(self, send: Callable[[tuple], None], cancelled: Callable[[], bool]) -> Any:
        return self.callable(*self.args, **self.kwargs)


class BackgroundCall(FunctionSpecification):
    """Specification of a background call; see :func:`~offload.api.submit_call`."""

    __slots__ = ()
    task_class = CallTask
    future_class = CallFuture
