"""The pause gate of a task in a worker process: a socket of its own.

What runs where::

    main process                              worker process
    ------------                              --------------
    main thread        gate thread            task (main thread)
    -----------        -----------            ------------------
    future.pause()
      Listener(address)  accept() ...
      flag.knock(n)  ═ shared memory ═══════▶ attention() is true:
                                                Client(address) ─┐
                       ◀── connection ────────────────────────────┘
    gate.pause() ─▶ outbox ─▶ send ──────────▶ checkpoint(): recv
    gate.send(v) ─▶ outbox ─▶ send ──────────▶   (blocks while paused)
    gate.resume()/cancel() ─▶ send ──────────▶   wakes
    future done: close ─▶ the thread ends, the socket file goes

Nothing polls: the task blocks in ``recv`` on its connection while paused,
and the gate's thread in ``accept`` or on a condition.  The address is the
flag's own (a file in the temporary directory, named after its shared-memory
slot and generation), so the task finds it with no message: the main
process listens there before it knocks.  The connection authenticates
with the application's ``authkey``, which its worker processes inherit.

A task that never pauses nor receives a value costs nothing here: the gate
is made by the future's first ``pause()`` or ``send()``, and the task
connects only once knocked.

Each knock also counts the controls posted so far (in the slot's low
bits), and a task at its pause point first receives that many: a control
posted before the task looks is always applied there, never one or two
items later (the gate thread may not have written it yet).
"""

from __future__ import annotations

import pickle
import threading
from collections import deque
from collections.abc import Callable
from multiprocessing import current_process
from multiprocessing.connection import Client, Listener
from typing import Any

from offload._backends.remote import dumps

#: Control kinds, main process to task.
PAUSE, RESUME, VALUE, CANCEL = range(4)

#: First message of a connection: from the task, or from ``close()``
#: waking the gate thread out of ``accept()``.
HELLO_TASK = b"t"
HELLO_WAKE = b"w"

#: Seconds ``close()`` waits for the gate thread to end.
CLOSE_TIMEOUT = 5.0

#: Low bits of a knocked flag slot that count the controls posted: the
#: count wraps around at KNOCK_MASK (see ``_FlagBase.knock``).
KNOCK_BITS = 16
KNOCK_MASK = (1 << KNOCK_BITS) - 1

_PAUSE = dumps((PAUSE, None))
_RESUME = dumps((RESUME, None))
_CANCEL = dumps((CANCEL, None))


class ProcessPauseGate:
    """Main-process side of one task's gate.  Main thread, except the
    gate thread that accepts the task's connection and writes to it.

    Parameters
    ----------
    address : str
        The flag's ``pause_address()``.
    knock : callable
        The flag's ``knock(count)``: tells the task how many controls were
        posted in all, so that it waits for each (and connects at first).
    """

    def __init__(self, address: str, knock: Callable[[int], None]) -> None:
        self._address = address
        self._knock = knock
        self._listener = Listener(
            address, family="AF_UNIX", authkey=current_process().authkey
        )
        self._condition = threading.Condition(threading.Lock())
        self._outbox: deque[bytes] = deque()
        #: Controls posted (CANCEL aside): what the knocks count.
        self._posts = 0
        self._closing = False
        self._connected = False
        #: close() connects to wake the thread out of accept().
        self._waking = False
        self._thread = threading.Thread(
            target=self._serve, name="offload-pause-gate", daemon=True
        )
        self._thread.start()

    def pause(self) -> None:
        self._post(_PAUSE)

    def resume(self) -> None:
        self._post(_RESUME)

    def send(self, value: Any) -> None:
        # Pickled here, so that a value that cannot be sent raises in send().
        self._post(dumps((VALUE, value)))

    def cancel(self) -> None:
        """Wake a task blocked in recv (its flag is set already).  Any thread."""
        with self._condition:
            self._outbox.append(_CANCEL)
            self._condition.notify_all()

    def close(self) -> None:
        """The future is done: end the thread, remove the socket file."""
        with self._condition:
            if self._closing:
                return
            self._closing = True
            self._outbox.clear()
            self._waking = not self._connected
            self._condition.notify_all()
        if self._waking:
            try:
                waker = Client(
                    self._address, family="AF_UNIX", authkey=current_process().authkey
                )
                waker.send_bytes(HELLO_WAKE)
                waker.close()
            except OSError:
                pass  # the thread is gone already
        self._thread.join(CLOSE_TIMEOUT)

    def _post(self, data: bytes) -> None:
        """Queue a control for the gate thread, and count it in the flag's
        slot: the task, at its next pause point, waits until it has it."""
        with self._condition:
            self._outbox.append(data)
            self._posts += 1
            self._knock(self._posts)
            self._condition.notify_all()

    def _serve(self) -> None:
        """Accept the task's connection, then write the controls (gate thread)."""
        listener = self._listener
        connection = None
        try:
            connection = _accept(listener)
            if connection is None:
                return
            with self._condition:
                self._connected = True
                waking = self._waking
            if waking:
                # close() decided to wake accept() before the task's
                # connection came: take the waker's too, or it would hang.
                waker = _accept(listener)
                if waker is not None:
                    waker.close()
            while True:
                with self._condition:
                    while not self._outbox and not self._closing:
                        self._condition.wait()
                    if self._closing:
                        return
                    batch = list(self._outbox)
                    self._outbox.clear()
                for data in batch:
                    connection.send_bytes(data)
        except OSError:
            pass  # the worker process is gone; so is its task
        finally:
            if connection is not None:
                connection.close()
            listener.close()


def _accept(listener: Listener) -> Any:
    """The task's connection, or None for ``close()``'s (gate thread)."""
    while True:
        try:
            connection = listener.accept()
            hello = connection.recv_bytes()
        except (OSError, EOFError):
            continue  # a connection that failed to authenticate
        if hello == HELLO_TASK:
            return connection
        connection.close()
        return None


class ProcessWorkerGate:
    """Worker side of one task's gate: its connection to the main process.

    Made in the worker by the task's first pause point after a knock.
    """

    __slots__ = ("_connection", "_posted", "_received", "_paused", "_values")

    def __init__(self, address: str, posted: Callable[[], int | None]) -> None:
        #: The flag's ``posted()``: how many controls the main process sent.
        self._posted = posted
        self._received = 0
        self._paused = False
        self._values: deque[Any] = deque()
        try:
            connection = Client(
                address, family="AF_UNIX", authkey=current_process().authkey
            )
            connection.send_bytes(HELLO_TASK)
        except OSError:
            # The future is done already: nothing to wait for.
            connection = None
        self._connection = connection

    def checkpoint(self, cancelled: Callable[[], bool]) -> None:
        """Receive every control posted so far; block while paused, until
        resumed or ``cancelled()``."""
        connection = self._connection
        if connection is None:
            return
        try:
            while (
                self._behind()
                or connection.poll()
                or (self._paused and not cancelled())
            ):
                kind, value = pickle.loads(connection.recv_bytes())
                if kind == CANCEL:
                    continue  # the loop looks at cancelled() again
                self._received += 1
                if kind == PAUSE:
                    self._paused = True
                elif kind == RESUME:
                    self._paused = False
                else:
                    self._values.append(value)
        except (EOFError, OSError):
            self.close()

    def _behind(self) -> bool:
        """Whether controls the main process posted have not come yet."""
        posted = self._posted()
        if posted is None:
            return False  # cancelled: what is on its way no longer matters
        # Counts modulo KNOCK_MASK + 1; a control read before its knock
        # is seen puts the task "ahead", never behind.
        missing = (posted - self._received) & KNOCK_MASK
        return 0 < missing <= KNOCK_MASK // 2

    def take(self, default: Any) -> Any:
        """The oldest value received and not taken yet, or ``default``."""
        try:
            return self._values.popleft()
        except IndexError:
            return default

    def close(self) -> None:
        """The task is over, or the main process's side is gone."""
        connection, self._connection = self._connection, None
        self._paused = False
        if connection is not None:
            connection.close()
