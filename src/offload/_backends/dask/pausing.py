"""The pause gate of a task on a Dask worker: controls pushed to worker memory.

What runs where::

    main thread              pusher thread (client)      each worker process
    -----------              ----------------------      -------------------
    future.pause() ─ queue ─▶ client.run(deliver, ─────▶ gates[key]: paused,
    future.send(v)             key, kind, data)           values; notify
    future.resume()                                     task thread, at its
    flag.set() (cancel) ────▶ client.run(mark_cancelled)  pause point:
                               ──────────────────────▶   attention(): key in
                                 cancelled, and the       cancelled or gates
                                 key's gate notified      checkpoint(): waits
                                                          on the condition
    future done ───────────▶ client.run(forget_gate) ──▶ gates.pop(key)

The controls travel like cancellations (``cancel.py``), by the context's
pusher thread, in order, so that ``pause()`` never blocks the main thread
on the scheduler.  A paused task waits on a condition variable of its
worker process: no polling, no round trip; marking it cancelled notifies
that condition, whoever set the flag.  Each control costs one
``client.run`` to every worker (the application does not know which
worker runs the task), a few milliseconds after the call; sent values go
to every worker and are dropped from them when the future is done, so
send small values.
"""

from __future__ import annotations

import pickle
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from offload._backends.remote import dumps

#: Control kinds, main process to task.
PAUSE, RESUME, VALUE = range(3)


class DaskWorkerGate:
    """A task's pause state and received values, in a worker process.

    :func:`deliver` (the worker's event loop, through ``client.run``)
    changes it; the task's thread waits on it.
    """

    __slots__ = ("_condition", "_paused", "_values")

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._paused = False
        self._values: deque[Any] = deque()

    def apply(self, kind: int, data: bytes | None) -> None:
        with self._condition:
            if kind == PAUSE:
                self._paused = True
            elif kind == RESUME:
                self._paused = False
            elif kind == VALUE:
                self._values.append(data)
            self._condition.notify_all()

    def wake(self) -> None:
        """Its task was marked cancelled: a waiter looks again."""
        with self._condition:
            self._condition.notify_all()

    def checkpoint(self, cancelled: Callable[[], bool]) -> None:
        """Block while paused, until resumed or ``cancelled()`` (task thread)."""
        with self._condition:
            while self._paused and not cancelled():
                self._condition.wait()

    def take(self, default: Any) -> Any:
        """The oldest value received and not taken yet, or ``default``."""
        try:
            data = self._values.popleft()
        except IndexError:
            return default
        # Unpickled here, on the worker that runs the task, not on all.
        return pickle.loads(data)

    def state(self) -> tuple[bool, int]:
        """``(paused, values waiting)``: what this worker has received."""
        with self._condition:
            return self._paused, len(self._values)

    def close(self) -> None:
        """The task is over; the future's end makes the workers forget it."""


#: key -> gate, in each worker process: the keys of the tasks that were
#: paused or sent values (a task's ``attention()`` asks it).
gates: dict[str, DaskWorkerGate] = {}

_gates_lock = threading.Lock()


def gate_of(key: str) -> DaskWorkerGate:
    """The gate of ``key`` in this worker process, made if need be."""
    with _gates_lock:
        gate = gates.get(key)
        if gate is None:
            gate = gates[key] = DaskWorkerGate()
        return gate


def deliver(key: str, kind: int, data: bytes | None) -> None:
    """Apply one control to the task ``key`` (each worker, ``client.run``)."""
    gate_of(key).apply(kind, data)


def forget_gate(key: str) -> None:
    """The future of ``key`` is done (each worker, ``client.run``)."""
    with _gates_lock:
        gates.pop(key, None)


def forget_gates(prefix: str) -> None:
    """Forget the gates of one context (each worker, as it closes)."""
    with _gates_lock:
        for key in [key for key in gates if key.startswith(prefix)]:
            del gates[key]


class DaskPauseGate:
    """Main side of one task's gate: queues controls for the pusher thread.

    Parameters
    ----------
    key : str
        The task's cancel-flag key.
    run_on_workers : callable
        ``run_on_workers(function, *args)``: the context's pusher.
    """

    __slots__ = ("_key", "_run_on_workers")

    def __init__(self, key: str, run_on_workers: Callable[..., None]) -> None:
        self._key = key
        self._run_on_workers = run_on_workers

    def pause(self) -> None:
        self._run_on_workers(deliver, self._key, PAUSE, None)

    def resume(self) -> None:
        self._run_on_workers(deliver, self._key, RESUME, None)

    def send(self, value: Any) -> None:
        # Pickled here, so that a value that cannot be sent raises in send().
        self._run_on_workers(deliver, self._key, VALUE, dumps(value))

    def cancel(self) -> None:
        """Nothing to do: the cancel flag's push wakes the task."""

    def close(self) -> None:
        self._run_on_workers(forget_gate, self._key)
