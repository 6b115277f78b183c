"""The socket between the application and the embedded cluster's helper.

Both ends speak the same way: each message is a tuple whose first item
names its kind; a :class:`Writer` thread sends every message queued since
its last write as one pickled list, so that neither the GUI thread
(submitting) nor Dask's event loop (reporting) ever blocks on a full
socket.  What each kind carries is listed in :mod:`.helper` (application
side) and :mod:`.helper_main` (helper side).
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import threading
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

logger = logging.getLogger("offload.contexts.dask")

#: Seconds, beyond the close timeouts, that closing waits for the helper to
#: exit before killing it (its workers go with it).
EXIT_GRACE = 10.0


class Writer:
    """Sends what is put, in order, from a thread of its own, in batches."""

    def __init__(self, connection: Connection, name: str) -> None:
        self._connection = connection
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self.broken = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, message: Any) -> None:
        """Queue ``message`` (any thread); never blocks."""
        self._queue.append(message)
        self._wake.set()

    def stop(self, timeout: float) -> None:
        """Send what is queued, then stop."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        queue = self._queue
        while True:
            self._wake.wait()
            self._wake.clear()
            while queue:
                batch = [queue.popleft() for _ in range(len(queue))]
                if self.broken:
                    continue
                try:
                    self._connection.send_bytes(pickled_batch(batch))
                except (OSError, ValueError):
                    # The other end is gone: nothing more to do.
                    self.broken = True
                    logger.debug("offload: the Dask helper connection broke", exc_info=True)
            if self._stopping and not queue:
                return


def pickled_batch(batch: list[Any]) -> bytes:
    """``batch`` pickled; a message that does not pickle is left out, logged.

    offload's own messages always pickle (bytes, strings, numbers); what
    might not is a Dask event forwarded as it came.
    """
    try:
        return pickle.dumps(batch, pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - find the culprit below
        pass
    kept = []
    for message in batch:
        try:
            pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - whatever pickling raises
            logger.error("offload: a %r message to or from the Dask helper could "
                         "not be pickled and was dropped", message[0], exc_info=True)
            continue
        kept.append(message)
    return pickle.dumps(kept, pickle.HIGHEST_PROTOCOL)


def hang_up(connection: Connection) -> None:
    """End the socket both ways, for the helper and for our reader thread.

    Both see end of file at once.  Closing the connection instead does
    neither while the reader is blocked in ``recv``: the kernel keeps the
    socket open until that call returns, so the helper would not notice
    (and the application waited its whole exit grace for it), and the
    reader, once woken, would read from a closed handle.
    """
    try:
        with socket.socket(fileno=os.dup(connection.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed, or the helper's end is gone
        pass


def pickled_error(error: BaseException | None) -> bytes:
    """``error`` pickled, or a RuntimeError that describes it."""
    if error is None:
        error = RuntimeError("the Dask task failed without an exception")
    try:
        return pickle.dumps(error, pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - describe it instead
        return pickle.dumps(RuntimeError(f"{type(error).__name__}: {error}"))
