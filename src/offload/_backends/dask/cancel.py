"""Cancel flags for tasks on Dask workers, answered from worker memory.

What runs where::

    main thread                 pusher thread (client)      each worker
    -----------                 ----------------------      -----------
    flag.set()  ─ queue ──────▶ every batch of flags:
                                  client.run(mark_cancelled, ─▶ _cancelled
                                             keys)                .update(keys)
                                    ◀── keys running now ───────
                                  client.cancel(the other,
                                    not-started Dask futures)
                                                             task: flag.is_set()
                                                               = key in _cancelled

A task asks "was I cancelled?" before each progress message and each
iteration step, so the answer must cost no round trip: it is a look-up in a
set of this worker process.  The main thread pushes the keys of cancelled
tasks to every worker in batches (one ``client.run`` per batch, about 2 ms),
from a thread of its own so that ``cancel()`` never blocks the GUI.  A task
whose Dask future has not reported ``STARTED`` is also cancelled in Dask, so
that a queued task never runs and ``executor.stop()`` does not have to wait
for every queued task to be scheduled.

The events of ``context.event()`` are another matter: the application's
own signals, which tasks set and wait for as often as the main thread does.
:class:`DaskEvent` is a ``distributed.Event``, kept by the scheduler, so a
``set()`` anywhere wakes a ``wait()`` anywhere at once, for one round trip
to the scheduler per call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from offload._backends.dask.pausing import (
    DaskPauseGate,
    DaskWorkerGate,
    forget_gates,
    gate_of,
    gates,
)

logger = logging.getLogger("offload.contexts.dask")

#: Keys of the cancelled tasks, in each worker process.
_cancelled: set[str] = set()

#: Keys of the tasks whose runner runs now, in each worker process.
_running: set[str] = set()

#: Keys of cancelled tasks that still ran when their context closed: they
#: must keep seeing their flag set, and are forgotten once they end.
_forget_at_end: set[str] = set()

#: Makes "start a task" and "mark tasks cancelled" atomic with each other.
_lock = threading.Lock()


def mark_cancelled(keys: Iterable[str]) -> list[str]:
    """Record cancelled tasks (runs on each worker, through ``client.run``).

    Returns the keys of those tasks that run on this worker now: they will
    report their own end and must not be cancelled in Dask.  Any other of
    ``keys`` that starts later sees its flag set and never runs its callable.
    """
    keys = list(keys)
    with _lock:
        _cancelled.update(keys)
        running = [key for key in keys if key in _running]
    for key in keys:
        gate = gates.get(key)
        if gate is not None:
            gate.wake()  # a paused task sees its flag set, and ends
    return running


def task_starting(key: str) -> None:
    """Note that the runner of ``key`` starts (worker task thread)."""
    with _lock:
        _running.add(key)


def task_ended(key: str) -> None:
    """Note that the runner of ``key`` has sent its final message."""
    with _lock:
        _running.discard(key)
        if key in _forget_at_end:
            _forget_at_end.discard(key)
            _cancelled.discard(key)


def forget_cancelled(prefix: str) -> None:
    """Forget the keys of one context (runs on each worker when it closes).

    A task of it that still runs keeps its key until it ends: its context
    closing cancelled it, and that cancel reaches the worker in the same
    batch as this call (the task must still see it).
    """
    with _lock:
        for key in [key for key in _cancelled if key.startswith(prefix)]:
            if key in _running:
                _forget_at_end.add(key)
            else:
                _cancelled.discard(key)
    forget_gates(prefix)


class WorkerCancelFlag:
    """What a :class:`DaskCancelFlag` becomes on a worker."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def is_set(self) -> bool:
        """True once the key was pushed to this worker."""
        return self.key in _cancelled

    def set(self) -> None:
        """Mark cancelled in this worker process only."""
        _cancelled.add(self.key)

    def attention(self) -> bool:
        """True once cancelled, paused or sent a value (a task's pause
        point asks it; two set look-ups)."""
        key = self.key
        return key in _cancelled or key in gates

    def worker_gate(self) -> DaskWorkerGate:
        """The task's pause gate in this worker process."""
        return gate_of(self.key)

    def __reduce__(self) -> tuple:
        return (WorkerCancelFlag, (self.key,))


class DaskCancelFlag:
    """The cancel flag of one task, on the client side.

    ``set()`` is called on the main thread (by ``future.cancel()``), or on
    the client's event-loop thread when a lost worker ends a task.  It
    pickles to a :class:`WorkerCancelFlag` with the same key.
    """

    __slots__ = ("key", "_pusher", "_set", "record", "dask_future")

    def __init__(self, key: str, pusher: CancelPusher) -> None:
        self.key = key
        self._pusher = pusher
        self._set = False
        #: The router's ``TaskRecord``, once submitted (tells "started").
        self.record: Any = None
        #: The Dask future, while it is pending.
        self.dask_future: Any = None

    def set(self) -> None:
        """Ask the task to stop: push the key to the workers, soon."""
        if not self._set:
            self._set = True
            self._pusher.request(self)

    def is_set(self) -> bool:
        """True once :meth:`set` was called."""
        return self._set

    def pause_gate(self) -> DaskPauseGate:
        """A pause gate for this flag's task (main thread, once)."""
        return DaskPauseGate(self.key, self._pusher.run_on_workers)

    def __reduce__(self) -> tuple:
        return (WorkerCancelFlag, (self.key,))


class DaskEvent:
    """``context.event()`` of a :class:`DaskContext`: a ``distributed.Event``
    with the API of ``threading.Event``.

    The scheduler keeps its state: ``set()``, ``clear()`` and ``is_set()``
    are one round trip to it each, from the main thread or from a task on
    a worker, and ``wait()`` returns as soon as the scheduler sees a
    ``set()``.  It pickles to its name; on a worker it talks to the
    scheduler through the worker's own client.

    Parameters
    ----------
    name : str
        The name the scheduler knows the event by.
    client : distributed.Client, optional
        The client to use; by default the worker's (``get_client()``).
    """

    __slots__ = ("name", "_event")

    def __init__(self, name: str, client: Any = None) -> None:
        from distributed import Event

        self.name = name
        self._event = Event(name, client=client)

    def set(self) -> None:
        """Set the event: every ``wait()`` returns True.  Any thread."""
        self._event.set()

    def clear(self) -> None:
        """Unset the event.  Any thread."""
        self._event.clear()

    def is_set(self) -> bool:
        """True while the event is set.  Any thread."""
        return bool(self._event.is_set())

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the event is set, or ``timeout`` seconds; return
        whether it is set (False on a timeout).  Any thread."""
        if timeout is not None and timeout <= 0:
            # Dask's zero timeout may expire before it looks at the event.
            return self.is_set()
        return bool(self._event.wait(timeout))

    def __reduce__(self) -> tuple:
        return (DaskEvent, (self.name,))

    def __repr__(self) -> str:
        return f"<DaskEvent {self.name!r}>"


class CancelPusher:
    """A thread that pushes cancellations to the workers in batches.

    Parameters
    ----------
    client : distributed.Client
        The context's client.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._flags: deque[DaskCancelFlag] = deque()
        self._jobs: deque[tuple[Callable[..., Any], tuple]] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name="offload-dask-cancel", daemon=True
        )
        self._thread.start()

    def request(self, flag: DaskCancelFlag) -> None:
        """Queue a flag to push (any thread)."""
        self._flags.append(flag)
        self._wake.set()

    def run_on_workers(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` on every worker, soon, in order (any thread)."""
        self._jobs.append((function, args))
        self._wake.set()

    def close(self, timeout: float) -> None:
        """Push what is queued, then stop the thread (main thread)."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("offload: the Dask cancel thread did not stop in %s s", timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self._push()
            except Exception:  # noqa: BLE001 - keep pushing later batches
                # Once the client closes (the application exits with the
                # context open, say), there is nothing left to cancel.
                closed = getattr(self._client, "status", None) in ("closing", "closed")
                logger.log(logging.DEBUG if closed else logging.WARNING,
                           "offload: pushing cancellations to Dask failed", exc_info=True)
            if self._stopping and not self._flags and not self._jobs:
                return

    def _push(self) -> None:
        flags = self._flags
        taken = [flags.popleft() for _ in range(len(flags))]
        if taken:
            # Mark first, and learn which of the tasks run now: the
            # client's "started" (a message in flight) may lag behind.
            replies = self._client.run(
                mark_cancelled, [flag.key for flag in taken], on_error="ignore"
            )
            running: set[str] = set()
            for reply in replies.values():
                if isinstance(reply, list):
                    running.update(reply)
            queued = []
            for flag in taken:
                future = flag.dask_future
                record = flag.record
                if (future is not None and flag.key not in running
                        and (record is None or not record.started)):
                    queued.append(future)
            if queued:
                # Not started anywhere, and any that starts from now on sees
                # its key marked: cancelling them in Dask drops them from its
                # queues.  A task that runs is left to end and report it
                # (cancelling it in Dask would call it CANCELLED while it
                # still runs on its worker).
                self._client.cancel(queued)
        jobs = self._jobs
        while jobs:
            function, args = jobs.popleft()
            self._client.run(function, *args, on_error="ignore")


def restart_running(client: Any, cluster: Any, key: str) -> str:
    """Force-cancel Dask task ``key``: restart the worker running it, if that
    worker runs one task at a time; say what was done.

    Runs where the client is (the helper process, through
    ``HelperClient.call``, or a thread of the application's), never on the
    main thread: each step is a round trip to the scheduler.  The task is
    cancelled in Dask first, so that the scheduler does not run it again
    elsewhere once its worker is gone.  A worker with several threads runs
    other tasks too, and one without a nanny would not come back: either
    is left alone (the cancel stays cooperative).
    """
    import distributed

    running = [address for address, keys in client.processing().items() if key in keys]
    if not running:
        return "not running"
    address = running[0]
    if client.nthreads().get(address) != 1:
        return "cooperative: the worker runs several tasks at once"
    # Only a nanny restarts a worker: one without is removed for good.
    worker = client.scheduler_info().get("workers", {}).get(address, {})
    if not worker.get("nanny"):
        return "cooperative: the worker has no nanny to restart it"
    client.cancel([distributed.Future(key, client)], force=True)
    # ``Client.cancel`` only queues the request on the client's batched
    # stream.  Were the worker restarted before the scheduler read it, the
    # scheduler would see the task's worker leave and run the task again on
    # another worker (seen with distributed 2024.1), where nothing stops it.
    if not _left_the_scheduler(client, key, RELEASE_TIMEOUT):
        logger.warning(
            "offload: the Dask scheduler still had task %s %.0f s after it was "
            "cancelled; restarting its worker anyway", key, RELEASE_TIMEOUT,
        )
    client.restart_workers([address], raise_for_error=False)
    return f"restarted {address}"


#: Seconds ``restart_running`` waits for the scheduler to drop a cancelled
#: task before it restarts the task's worker.
RELEASE_TIMEOUT = 10.0


def _left_the_scheduler(client: Any, key: str, timeout: float) -> bool:
    """Wait until no worker is processing ``key``, as the scheduler sees it;
    True if that happened within ``timeout`` seconds.  Each look is one
    round trip to the scheduler (``Client.processing``)."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        if not any(key in keys for keys in client.processing().values()):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
