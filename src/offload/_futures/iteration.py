"""Background iterations: each item of an iterable fires ``result_event``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from traits.api import Event

from offload._futures.function_task import FunctionSpecification, FunctionTask
from offload._futures.pausing import (
    NO_VALUE,
    VALUES_RECEIVED,
    IterationControl,
    PausePoint,
    attention_of,
)

#: Message kind of one generated item.
GENERATED = "generated"


class IterationFuture(IterationControl):
    """Future of :func:`~offload.api.submit_iteration`.

    ``result_event`` fires on the main thread with each item, in order; a
    generator's ``return`` value becomes ``result``.

    ``pause()`` stops the iteration at its next ``yield`` (the item it
    yields is delivered; the next is not asked for) until ``resume()`` or
    ``cancel()``; ``send(value)`` queues a value for the generator's next
    ``yield``.  Both are called on the main thread.
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
        # One call per item, as cheap as cancelled(): true once cancelled,
        # paused, or sent a value; only then is a pause point made.
        attention = attention_of(cancelled)
        point = None
        try:
            # Before the first item too: a task paused before it started
            # asks for nothing until resumed.
            if attention():
                point = PausePoint(cancelled)
                if point.stop():
                    return None
            item = next(iterable)
            while True:
                send((GENERATED, item))
                # Not held while the iterable makes the next item: once
                # sent, an item is the application's alone to keep or free.
                del item
                if attention():
                    if point is None:
                        point = PausePoint(cancelled)
                    if point.stop():
                        return None
                    value = point.take()
                    if value is not NO_VALUE:
                        item = _send_to(iterable, value)
                        continue
                item = next(iterable)
        except StopIteration as stop:
            return stop.value
        finally:
            if point is not None:
                point.close()
                if point.received:
                    send((VALUES_RECEIVED, point.received))
            # A cancelled generator is closed, running its finally blocks.
            close = getattr(iterable, "close", None)
            if close is not None:
                close()


def _send_to(iterable: Any, value: Any) -> Any:
    """``iterable.send(value)``; a clear error for an iterable without it."""
    try:
        send = iterable.send
    except AttributeError:
        raise TypeError(
            f"a value was sent to an iteration over a {type(iterable).__name__}, "
            "which has no send() method; only a generator can receive values "
            "(submit a generator function, or do not call send())"
        ) from None
    return send(value)


class BackgroundIteration(FunctionSpecification):
    """Specification of a background iteration."""

    __slots__ = ()
    task_class = IterationTask
    future_class = IterationFuture
