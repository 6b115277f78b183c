"""Router for tasks running in worker processes.

The router's :attr:`~ProcessRouter.sender` pickles to one small int, the
router's id.  In a worker process it appends to the worker's
:class:`~offload._backends.process.channel.Channel`, which sends messages to
the main process in chunks; there, the pool's reader thread calls
:func:`dispatch`, which finds each router by id and hands it the chunk with
one ``put_many``.  The main thread is woken once per batch by the
:class:`~offload._routing.inbox.Inbox` this router is.

Outside a worker process (a sender called in the main process, for instance
by a thread pool given to an executor) the sender puts straight into its
router.
"""

from __future__ import annotations

import itertools
import logging
import os
import weakref
from collections.abc import Callable, Iterable

from offload._backends.forwarding import on_the_wire
from offload._backends.process import channel as process_channel
from offload._event_loops.interface import IEventLoop
from offload._routing.inbox import DEFAULT_TIME_SLICE, Inbox
from offload._routing.protocol import CRASHED, RAISED, RETURNED

logger = logging.getLogger("offload.routing")

#: router id -> router, for the routers of this process still connected.
_ROUTERS: weakref.WeakValueDictionary[int, ProcessRouter] = weakref.WeakValueDictionary()

_router_ids = itertools.count()


class ProcessSender:
    """``sender(task_id, message)`` for tasks in worker processes.

    Pickles to its router's id and what to forward, so sending it with
    every task costs a few bytes.  Runs in the worker (any thread).
    """

    __slots__ = ("router_id", "owner_pid", "config", "forward")

    def __init__(
        self,
        router_id: int,
        owner_pid: int,
        config: tuple[bool, bool] | None = None,
        forward: tuple | None = None,
    ) -> None:
        self.router_id = router_id
        #: The process of the router (a forked child has a copy of its table).
        self.owner_pid = owner_pid
        #: Application side: the context's (forward_warnings, forward_logging).
        self.config = config
        #: Worker side: what to forward (see ``forwarding.on_the_wire``).
        self.forward = forward

    def __reduce__(self) -> tuple:
        return (
            ProcessSender,
            (self.router_id, self.owner_pid, None,
             self.forward if self.config is None else on_the_wire(self.config)),
        )

    def __call__(self, task_id: int, message: tuple) -> None:
        channel = process_channel.current_channel()
        if channel is not None:
            channel.send(self.router_id, task_id, message)
            return
        worker = process_channel.forked_from()
        if worker is not None:
            _in_forked_child(worker, message)
            return
        router = _ROUTERS.get(self.router_id)
        if router is None or os.getpid() != self.owner_pid:
            raise RuntimeError(
                "this task runs in a process that is not a worker of its "
                "MultiprocessingContext, so its messages cannot reach the "
                "application; give the executor a pool made by "
                "context.worker_pool() (or none)"
            )
        router.put((task_id, message))


def _in_forked_child(worker: int, message: tuple) -> None:
    """A message sent in a child that a task forked: the task's end ends
    the child; the task's own messages fail; the rest is dropped."""
    kind = message[0]
    if kind == RETURNED:
        process_channel.end_forked_child("returned from")
    if kind in (RAISED, CRASHED):
        (_, _, formatted), error = message[1]
        code = error.code if isinstance(error, SystemExit) and isinstance(error.code, int) else 1
        process_channel.end_forked_child("raised from", formatted, code)
    if isinstance(kind, str):
        raise RuntimeError(
            f"this process ({os.getpid()}) was forked by a task in worker "
            f"process {worker}: it cannot send the task's messages (only the "
            "worker process can); send them from the worker, and end a "
            "forked child with os._exit()"
        )


#: Undelivered messages past which the pool's reader thread waits (up to
#: ``READER_PAUSE`` s per chunk) for the main thread to catch up.
READER_BACKLOG = 4_096

#: Longest wait (s) of the reader thread per chunk it reads.
READER_PAUSE = 0.005


class ProcessRouter(Inbox):
    """Delivers messages from worker processes on the main thread.

    Parameters
    ----------
    event_loop : IEventLoop
        The loop whose main thread receives the messages.
    time_slice : float
        Longest time (s) spent delivering per wake-up of the loop.
    """

    def __init__(
        self,
        event_loop: IEventLoop,
        time_slice: float = DEFAULT_TIME_SLICE,
        forward: tuple[bool, bool] | None = None,
    ):
        super().__init__(event_loop, time_slice)
        self._router_id = next(_router_ids)
        self._sender = ProcessSender(self._router_id, os.getpid(), forward)
        _ROUTERS[self._router_id] = self

    @property
    def sender(self) -> Callable[[int, tuple], None]:
        return self._sender

    def disconnect(self) -> None:
        _ROUTERS.pop(self._router_id, None)
        super().disconnect()

    def put_many(self, items: Iterable[tuple]) -> None:
        """Queue a chunk's items (the pool's reader thread).

        Then, if the main thread is far behind, wait a little for it: the
        reader reads no more, so the workers' pipes fill and their tasks
        block in ``send``.  Without this, a flood from a worker process
        piled up in the inbox faster than the main thread delivered it, and
        the last of 100,000 progress messages showed 0.15-0.2 s after it was
        sent (threads, which have their own backpressure: 3-6 ms).
        """
        super().put_many(items)
        self.wait_for_backlog(READER_BACKLOG, READER_PAUSE)


def dispatch(records: list[tuple]) -> None:
    """Hand ``(router_id, task_id, message)`` records to their routers.

    Called by a pool's reader thread with one chunk from a worker.  Runs of
    records for one router go in one ``put_many``, keeping their order.
    """
    if not records:
        return
    routers = _ROUTERS
    current = records[0][0]
    batch: list[tuple] = []
    append = batch.append
    for router_id, task_id, message in records:
        if router_id != current:
            _put(routers, current, batch)
            batch = []
            append = batch.append
            current = router_id
        append((task_id, message))
    _put(routers, current, batch)


def _put(routers: weakref.WeakValueDictionary, router_id: int, batch: list) -> None:
    router = routers.get(router_id)
    if router is None:
        # Its executor has released it: nobody is waiting for these.
        logger.debug("dropped %d message(s) for released router %s", len(batch), router_id)
        return
    router.put_many(batch)
