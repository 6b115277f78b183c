"""Background iterations: each item of an iterable fires ``result_event``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from traits.api import Event

from offload._futures.base import BaseFuture
from offload._futures.function_task import FunctionSpecification, FunctionTask

#: Message kind of one generated item.
GENERATED = "generated"


class IterationFuture(BaseFuture):
    """Future of :func:`~offload.api.submit_iteration`.

    ``result_event`` fires on the main thread with each item, in order; a
    generator's ``return`` value becomes ``result``.
    """

    #: Fired with each item the iterable yields (main thread, in order).
    result_event = Event()

    def _process_generated(self, item: Any) -> None:
        self.result_event = item


class IterationTask(FunctionTask):
    """Worker side: iterate, send each item, stop between items on cancel."""

    __slots__ = ()

    def __call__(self, send: Callable[[tuple], None], cancelled: Callable[[], bool]) -> Any:
        iterable = iter(self.callable(*self.args, **self.kwargs))
        try:
            while not cancelled():
                try:
                    item = next(iterable)
                except StopIteration as stop:
                    return stop.value
                send((GENERATED, item))
                # Not held while the iterable makes the next item: once
                # sent, an item is the application's alone to keep or free.
                del item
            return None
        finally:
            # A cancelled generator is closed, running its finally blocks.
            close = getattr(iterable, "close", None)
            if close is not None:
                close()


class BackgroundIteration(FunctionSpecification):
    """Specification of a background iteration."""

    __slots__ = ()
    task_class = IterationTask
    future_class = IterationFuture
