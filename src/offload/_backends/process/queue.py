"""The queue of a MultiprocessingContext: workers put, the main process gets.

A ``multiprocessing.Queue`` can reach a worker only when the worker is
started, and a ``Manager`` queue costs a helper process and a round trip per
item.  This queue instead pickles to a small id; in a worker process of the
context its ``put()`` sends the item on the worker's message pipe, and the
pool's reader thread in the main process puts it on the real queue.  So a
queue can be passed as an argument to any task, made before or after the
workers started.
"""

from __future__ import annotations

import itertools
import pickle
import queue
import weakref
from typing import Any

from offload._backends.process.channel import QUEUE_PUT, current_channel
from offload._backends.remote import dumps

#: queue id -> queue, in the main process.
_QUEUES: weakref.WeakValueDictionary[int, ProcessQueue] = weakref.WeakValueDictionary()

_queue_ids = itertools.count()


class ProcessQueue(queue.Queue):
    """A :class:`queue.Queue` in the main process that workers can put to.

    Use it like any ``queue.Queue`` in the main process.  Passed to a task
    that runs in a worker process, it arrives as a handle whose ``put()``
    sends the item back here (in order, after the messages the task sent
    before); ``get()`` works only in the main process.
    """

    def __init__(self) -> None:
        # Unbounded: a full queue would stall the thread that reads workers.
        super().__init__()
        self._queue_id = next(_queue_ids)
        _QUEUES[self._queue_id] = self

    def __reduce__(self) -> tuple:
        return (_queue_handle, (self._queue_id,))


class QueueHandle:
    """A :class:`ProcessQueue` as seen from a worker process: put only."""

    __slots__ = ("_queue_id",)

    def __init__(self, queue_id: int) -> None:
        self._queue_id = queue_id

    def __reduce__(self) -> tuple:
        return (_queue_handle, (self._queue_id,))

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Send ``item`` to the queue in the main process.

        Raises whatever pickling raises if ``item`` cannot be pickled.
        """
        channel = current_channel()
        if channel is None:
            raise RuntimeError(
                "this MultiprocessingContext queue can be used only in the main "
                "process and in the worker processes of its context"
            )
        channel.control((QUEUE_PUT, self._queue_id, dumps(item)))

    def put_nowait(self, item: Any) -> None:
        """Same as :meth:`put` (the queue in the main process is unbounded)."""
        self.put(item)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        raise RuntimeError(
            "a MultiprocessingContext queue is read in the main process; a "
            "worker process can only put() to it"
        )

    get_nowait = get


def _queue_handle(queue_id: int) -> Any:
    """Unpickle a queue: the queue itself in the main process, else a handle."""
    if current_channel() is None:
        found = _QUEUES.get(queue_id)
        if found is not None:
            return found
    return QueueHandle(queue_id)


def deliver(queue_id: int, data: bytes) -> None:
    """Put an item a worker sent on its queue (pool reader thread)."""
    target = _QUEUES.get(queue_id)
    if target is not None:
        target.put(pickle.loads(data))
