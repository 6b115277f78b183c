"""The worker half of the Dask router: coalesce messages into Dask events.

What runs where::

    Dask worker process                      client process
    -------------------                      --------------
    task thread: send(task_id, message)
      outbox.items.append(...)
      final message? ── flush now
      else wake the flusher thread
    flusher thread (one per process):
      every FLUSH_INTERVAL s: flush
    flush: pickle the batch ──▶ worker.log_event(topic, payload)
                                   ──▶ scheduler ──▶ Client.subscribe_topic
                                                     handler (client loop
                                                     thread) ──▶ Inbox

A Dask event costs about as much as a few hundred small messages, so a task
that sends many messages pays for one event every few milliseconds, not one
per message.  A task's final message flushes at once, in the task's thread,
so a finished task is reported without waiting for the flusher.

Order: each flush takes the items present and calls ``log_event`` while
holding the outbox lock.  ``log_event`` from a non-loop thread queues the
event on the worker's event loop in call order, so batches leave in the
order they were taken, and a task's messages (appended by one thread) keep
their order; its final message can never overtake the others.

This module imports dask only when it runs on a worker.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections import deque
from typing import Any

from offload._backends.forwarding import on_the_wire
from offload._routing.protocol import (
    CRASHED,
    FINAL_KINDS,
    RAISED,
    RETURNED,
    marshal_exception,
)

logger = logging.getLogger("offload.routing.dask")

#: Seconds the flusher waits after the first message of a batch before it
#: sends the batch.  Latency of a progress message is at most about this
#: plus one scheduler hop.
FLUSH_INTERVAL = 0.005

#: The largest number of messages sent in one event; a larger backlog goes
#: in several events (the scheduler keeps the last events of each topic).
MAX_BATCH = 20_000


class DaskSender:
    """The router's ``sender``: picklable, names the topic of one router.

    In the worker, ``_run_task`` swaps it for :meth:`bind`'s result, the
    ``send`` method of this process's outbox for the topic, so that the hot
    path makes no look-up per message.
    """

    __slots__ = ("topic", "config", "forward")

    def __init__(
        self,
        topic: str,
        config: tuple[bool, bool] | None = None,
        forward: tuple | None = None,
    ) -> None:
        self.topic = topic
        #: Application side: the context's (forward_warnings, forward_logging).
        self.config = config
        #: Worker side: what to forward (see ``forwarding.on_the_wire``).
        self.forward = forward

    def __reduce__(self) -> tuple:
        return (DaskSender, (self.topic, None, self._wire()))

    def _wire(self) -> tuple | None:
        # Pickled again where it was unpickled (Dask's scheduler may), it
        # carries on what it got.
        if self.config is None:
            return self.forward
        return on_the_wire(self.config)

    def bind(self, worker: Any) -> Any:
        """The outbox ``send`` of ``worker`` for this topic.  Worker side."""
        return outbox_for(self.topic, worker).send

    def __call__(self, task_id: int, message: tuple) -> None:
        # Only reached when a runner was not bound (should not happen).
        from distributed import get_worker

        outbox_for(self.topic, get_worker()).send(task_id, message)


class Outbox:
    """Messages of one topic waiting to leave one worker."""

    __slots__ = ("topic", "worker", "items", "lock", "__weakref__")

    def __init__(self, topic: str, worker: Any) -> None:
        self.topic = topic
        self.worker = worker
        self.items: deque = deque()
        self.lock = threading.Lock()

    def send(self, task_id: int, message: tuple) -> None:
        """Queue one message (task thread).  A final message flushes at once."""
        kind = message[0]
        if kind.__class__ is int and kind in FINAL_KINDS:
            self.items.append((task_id, _nest(message)))
            self.flush()
            return
        self.items.append((task_id, message))
        if not _wake.is_set():
            _wake.set()

    def flush(self) -> None:
        """Send what is queued as Dask events (any thread)."""
        items = self.items
        with self.lock:
            while items:
                batch = []
                popleft = items.popleft
                for _ in range(min(len(items), MAX_BATCH)):
                    batch.append(popleft())
                try:
                    self.worker.log_event(self.topic, _dumps(batch))
                except Exception:  # noqa: BLE001 - the worker is closing
                    logger.warning(
                        "offload: could not send %d message(s) from a Dask "
                        "worker (is it closing?)", len(batch), exc_info=True
                    )
                    return


class Nested:
    """A final message's payload, pickled on its own inside the batch.

    A result or exception that pickles on the worker may still fail to
    unpickle in the application (an exception class whose ``__init__``
    takes other arguments than its ``args``, a module missing there).
    Pickled apart, it spoils only its own message, which the router turns
    into a failure report, instead of the whole batch (other tasks'
    messages, and this task's end, lost: a future that never ends).
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> tuple:
        return (Nested, (self.data,))


def _nest(message: tuple) -> tuple:
    """The message to send for a final ``message`` (task thread)."""
    kind, arg = message
    if kind == RAISED or kind == CRASHED:
        info, exc = arg
        if exc is None:
            return message
        try:
            return (kind, (info, Nested(_dump_one(exc))))
        except Exception:  # noqa: BLE001 - keep the description only
            return (kind, (info, None))
    if kind == RETURNED:
        try:
            return (kind, Nested(_dump_one(arg)))
        except Exception as exc:  # noqa: BLE001
            return _unpicklable(message, exc)
    return message


def _dump_one(value: Any) -> bytes:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - lambdas, closures, local classes
        import cloudpickle

        return cloudpickle.dumps(value)


def _dumps(batch: list) -> bytes:
    """Pickle a batch; replace what cannot be pickled by a failure report."""
    try:
        return pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - sorted out one message at a time
        pass
    import cloudpickle

    safe = []
    for task_id, message in batch:
        try:
            cloudpickle.dumps(message)
        except Exception as exc:  # noqa: BLE001
            message = _unpicklable(message, exc)
        safe.append((task_id, message))
    return cloudpickle.dumps(safe)


def _unpicklable(message: tuple, exc: BaseException) -> tuple:
    """What to send instead of a message that cannot be pickled."""
    kind, arg = message
    if kind == RAISED:
        # Keep the description; drop the exception object.
        return (RAISED, (arg[0], None))
    what = "result" if kind == RETURNED else f"{kind!r} message"
    error = TypeError(
        f"the task's {what} could not be pickled to travel back from the Dask "
        f"worker ({type(exc).__name__}: {exc}); return and send only "
        "picklable values"
    )
    return (CRASHED, (marshal_exception(error), None))


# Per-process state -----------------------------------------------------------

#: (topic, id(worker)) -> Outbox.  Several workers may share a process
#: (``LocalCluster(processes=False)``); each keeps its own outboxes.
_outboxes: dict[tuple[str, int], Outbox] = {}
_outboxes_lock = threading.Lock()
_wake = threading.Event()
_flusher: threading.Thread | None = None


def outbox_for(topic: str, worker: Any) -> Outbox:
    """This process's outbox for ``topic`` on ``worker`` (made on first use)."""
    key = (topic, id(worker))
    outbox = _outboxes.get(key)
    if outbox is None or outbox.worker is not worker:
        with _outboxes_lock:
            outbox = _outboxes.get(key)
            if outbox is None or outbox.worker is not worker:
                outbox = _outboxes[key] = Outbox(topic, worker)
            _start_flusher()
    return outbox


def _start_flusher() -> None:
    global _flusher
    if _flusher is None or not _flusher.is_alive():
        _flusher = threading.Thread(
            target=_flush_forever, name="offload-dask-flusher", daemon=True
        )
        _flusher.start()


def _flush_forever() -> None:
    # A daemon thread of the worker process: it ends with the process.
    while True:
        _wake.wait()
        # Coalescing window: let more messages join this batch.
        time.sleep(FLUSH_INTERVAL)
        _wake.clear()
        for outbox in list(_outboxes.values()):
            if outbox.items:
                outbox.flush()


def forget_topic(topic: str) -> None:
    """Drop this process's outboxes for ``topic`` (run on workers on close)."""
    with _outboxes_lock:
        for key in [key for key in _outboxes if key[0] == topic]:
            outbox = _outboxes.pop(key)
            outbox.flush()
