"""Router for tasks running on Dask workers: messages travel as Dask events.

Each router has its own topic.  Workers coalesce the messages of that topic
into one Dask event every few milliseconds (:mod:`.outbox`), the
scheduler forwards each event to this client, and the client's event-loop
thread hands the batch to the main-thread :class:`Inbox`.  Measured against
``distributed.Queue`` and a direct socket in ``benchmarks/README.md``.

Besides carrying messages the router notices tasks that a lost worker left
behind (:meth:`DaskRouter.workers_lost`, or a second ``STARTED`` when Dask
re-runs a task elsewhere) and fails their futures with a clear message.

This module does not import dask: the context hands it a client.
"""

from __future__ import annotations

import logging
import pickle
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from offload._backends.dask.outbox import DaskSender, Nested
from offload._event_loops.interface import IEventLoop
from offload._routing.inbox import DEFAULT_TIME_SLICE, Inbox
from offload._routing.interface import OnFinished
from offload._routing.protocol import (
    CRASHED,
    FINAL_KINDS,
    RAISED,
    RETURNED,
    STARTED,
    raised_message,
)

logger = logging.getLogger("offload.routing.dask")


def _unnest(message: tuple) -> tuple:
    """Unpickle a final message's nested payload (``dask_outbox.Nested``).

    A payload that fails to unpickle here becomes a failure report that
    says why: the task's future FAILS rather than never ending.
    """
    kind, arg = message
    if kind == RETURNED and isinstance(arg, Nested):
        try:
            return (kind, pickle.loads(arg.data))
        except Exception as exc:  # noqa: BLE001 - whatever unpickling raises
            error = TypeError(
                "the task's result could not be unpickled in the application "
                f"({type(exc).__name__}: {exc}); return values whose classes "
                "are importable here and rebuild from their pickle"
            )
            return raised_message(error, CRASHED)
    if (kind == RAISED or kind == CRASHED) and isinstance(arg[1], Nested):
        info, nested = arg
        try:
            return (kind, (info, pickle.loads(nested.data)))
        except Exception:  # noqa: BLE001 - keep the description only
            return (kind, (info, None))
    return message


class TaskRecord:
    """What the router knows of one submitted task (main-process side).

    Made by the Dask worker pool at submission; ``started`` and ``ended`` are
    written by the client's event-loop thread as messages arrive, and read
    on the main thread when the task is cancelled.
    """

    __slots__ = ("task_id", "dask_key", "stop", "started", "ended")

    def __init__(self, task_id: int, dask_key: str, stop: Callable[[], None]) -> None:
        self.task_id = task_id
        self.dask_key = dask_key
        #: Sets the task's cancel flag, so that a re-run stops at once.
        self.stop = stop
        self.started = False
        self.ended = False


class DaskRouter(Inbox):
    """Delivers the messages of tasks run by one executor on a Dask cluster.

    Parameters
    ----------
    event_loop : IEventLoop
        Where messages are delivered (the main thread).
    client : distributed.Client
        Subscribed to this router's topic between ``connect`` and
        ``disconnect``.
    topic : str
        A topic name unique to this router.
    on_disconnect : callable, optional
        ``on_disconnect(router)``, called by :meth:`disconnect` (main thread).
    forward : (bool, bool), optional
        Whether tasks' warnings and log records are sent to the application.
    """

    def __init__(
        self,
        event_loop: IEventLoop,
        client: Any,
        topic: str,
        on_disconnect: Callable[[DaskRouter], None] | None = None,
        time_slice: float = DEFAULT_TIME_SLICE,
        forward: tuple[bool, bool] | None = None,
    ) -> None:
        super().__init__(event_loop, time_slice)
        self._client = client
        self.topic = topic
        self._sender = DaskSender(topic, forward)
        self._on_disconnect = on_disconnect
        #: task id -> record, while the task's Dask future is pending.
        self._tasks: dict[int, TaskRecord] = {}
        #: Dask key -> record, the same records.
        self._by_key: dict[str, TaskRecord] = {}
        self._subscribed = False

    @property
    def sender(self) -> Callable[[int, tuple], None]:
        return self._sender

    def connect(self, on_finished: OnFinished) -> None:
        super().connect(on_finished)
        # Sent on the client's batched stream to the scheduler, ahead of any
        # task submitted later, so no event of this topic can be missed.
        # The client may keep the handler after unsubscribe_topic (Dask
        # does, with an in-process cluster): it must not keep the router,
        # and through it the executor, alive.
        self._client.subscribe_topic(self.topic, _weakly(self._on_event))
        self._subscribed = True

    def disconnect(self) -> None:
        if self._subscribed:
            self._subscribed = False
            try:
                self._client.unsubscribe_topic(self.topic)
            except Exception:  # noqa: BLE001 - the client is already closed
                logger.debug("unsubscribe from %s failed", self.topic, exc_info=True)
        super().disconnect()
        if self._on_disconnect is not None:
            self._on_disconnect(self)

    # Task records (worker pool, main thread and client loop thread) ----------

    def track(self, record: TaskRecord) -> None:
        """Remember a submitted task until :meth:`untrack`.  Main thread."""
        self._tasks[record.task_id] = record
        self._by_key[record.dask_key] = record

    def untrack(self, record: TaskRecord) -> None:
        """Forget a task whose Dask future is done.  Any thread."""
        self._tasks.pop(record.task_id, None)
        self._by_key.pop(record.dask_key, None)

    # Client event-loop thread ------------------------------------------------

    def _on_event(self, event: tuple[float, Any]) -> None:
        """Handler of this topic's Dask events: one pickled batch each."""
        try:
            items = pickle.loads(event[1])
        except Exception:  # noqa: BLE001 - never kill the client's loop
            logger.exception("offload: could not unpickle a batch of messages")
            return
        tasks = self._tasks
        for index, (task_id, message) in enumerate(items):
            kind = message[0]
            if kind.__class__ is not int:
                continue
            if kind in FINAL_KINDS:
                message = _unnest(message)
                items[index] = (task_id, message)
                kind = message[0]
            record = tasks.get(task_id)
            if record is None:
                continue
            if kind == STARTED:
                if record.started:
                    items[index] = (task_id, self._lost(record, None))
                else:
                    record.started = True
            elif kind in FINAL_KINDS:
                record.ended = True
        self.put_many(items)

    def workers_lost(self, keys: Iterable[str], address: str) -> None:
        """Fail the started tasks that were running on a removed worker.

        Called on the client's event-loop thread when the scheduler reports
        that the worker at ``address`` is gone; ``keys`` are the Dask keys it
        was processing.  Tasks that had not started are left to Dask, which
        runs them elsewhere.
        """
        by_key = self._by_key
        for key in keys:
            record = by_key.get(key)
            if record is not None and record.started and not record.ended:
                self.put((record.task_id, self._lost(record, address)))

    def _lost(self, record: TaskRecord, address: str | None) -> tuple:
        record.ended = True
        record.stop()
        where = f"at {address} " if address else ""
        error = RuntimeError(
            f"the Dask worker {where}running this task was lost before the "
            "task ended (killed, out of memory, or its machine gone); the "
            "task did not finish.  If Dask runs it again elsewhere, that run "
            "is told it is cancelled and its result is ignored.  Submit it "
            "again to retry"
        )
        return raised_message(error, CRASHED)


def _weakly(method: Callable[[Any], None]) -> Callable[[Any], None]:
    """``method``, holding its object weakly: a no-op once it is gone."""
    reference = weakref.WeakMethod(method)

    def call(argument: Any) -> None:
        live = reference()
        if live is not None:
            live(argument)

    return call
