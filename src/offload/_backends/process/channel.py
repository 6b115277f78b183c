"""Worker side of process routing: buffer messages, send them in chunks.

Each worker process has one :class:`Channel`, writing to a pipe that a
thread of the main process reads (see ``offload._backends.process.pool``)::

    worker process                                main process
    --------------                                ------------
    task thread: sender(task_id, msg) ─┐
                                       ├─ buffer ─▶ pipe ─▶ reader thread
    flush thread (a few ms later) ─────┘                     router.put_many
    worker loop: task ended ─▶ flush + DONE record           pool future done

A chunk is ``(messages, controls)``: ``messages`` the pickled list of
``(router_id, task_id, message)``, ``controls`` a list of records for the
pool (a task ended, an item was put on a queue).  The large buffers of the
messages (arrays of at least ``shm.THRESHOLD`` bytes) are not in the pickle
but in shared-memory segments named by a trailer after the chunk (see
``offload._backends.process.shm``).  Messages are flushed when
``CHUNK_LIMIT`` of them are waiting, ``FLUSH_DELAY`` seconds after the first
of a batch (by the flush thread, so a lone progress message is not held while
the task computes), and at once when a task ends, in the same chunk as its
DONE record: a task's end can never overtake its messages.

A message that cannot be pickled does not lose the chunk: it is replaced by
a RAISED message that names the object, and that task's later messages are
dropped (its future has FAILED already).
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from typing import Any, NoReturn

from offload._backends.process.shm import Outgoing
from offload._backends.process.worker_segments import return_loans
from offload._backends.remote import (
    dumps,
    error_text,
    short_repr,
)
from offload._routing.protocol import RAISED, RETURNED, raised_message

#: Seconds a message may wait for others before the flush thread sends it.
FLUSH_DELAY = 0.002

#: Messages that make a chunk worth sending at once.
CHUNK_LIMIT = 512

# Every kind of control record, in one table: each must be distinct.
#: Control record: a work item ended.  ``(DONE, work_id, ok, value)``.
DONE = 0
#: Control record: an item put on a context queue.  ``(QUEUE_PUT, queue_id, data)``.
QUEUE_PUT = 1
#: Control record: the worker is up and waits for work.  ``(READY, pid)``.
READY = 2
#: Control record: the task kept references to arguments in shared memory,
#: which must not be reused.  ``(KEPT, names)``, before its DONE.
KEPT = 3
#: Control record: the worker exits after the DONE that follows (recycling).
#: ``(RETIRE, pid)``.
RETIRE = 4

#: The channel of this worker process; None outside worker processes.
_CHANNEL: Channel | None = None

#: The pid of the worker process whose child (a task forked) this is.
_FORKED_FROM: int | None = None


def current_channel() -> Channel | None:
    """This process's channel, if it is a worker process of offload."""
    return _CHANNEL


def install(channel: Channel | None) -> None:
    """Make ``channel`` this process's channel (worker start-up)."""
    global _CHANNEL
    _CHANNEL = channel


def forked_from() -> int | None:
    """The worker process this one was forked from by a task, or None."""
    return _FORKED_FROM


def forget_in_forked_child(worker_pid: int) -> None:
    """In a child that a task forked: drop the worker's channel.

    The child has copies of the worker's pipes: anything it sent on them
    would reach the application as if from the worker.  So its tasks'
    messages fail instead (see ``ProcessSender``).
    """
    global _CHANNEL, _FORKED_FROM
    _CHANNEL = None
    _FORKED_FROM = worker_pid


def end_forked_child(how: str, details: str = "", code: int = 0) -> NoReturn:
    """End this process, a child that a task forked, which ``how`` ("returned
    from", "raised from") the task instead of ending with ``os._exit()``.

    It must neither report to the application nor run the worker's loop:
    it says so on its standard error and exits with ``code``.
    """
    message = (
        f"offload: a task forked worker process {_FORKED_FROM}, and the child "
        f"process {os.getpid()} {how} the task instead of ending with "
        "os._exit(); offload ended the child (the worker's own result "
        f"stands).  End a forked child with os._exit(code).\n{details}"
    )
    try:
        os.write(2, message.encode(errors="replace"))
    except OSError:
        pass
    os._exit(code)


class Channel:
    """Buffers messages of the tasks of one worker process and sends them.

    Any thread of the worker may call :meth:`send` (a task may start its own
    threads); a lock keeps each chunk whole and the chunks in order.

    Parameters
    ----------
    connection : multiprocessing.connection.Connection
        Write end of the pipe to the main process.
    """

    def __init__(self, connection: Any, delay: float = FLUSH_DELAY, limit: int = CHUNK_LIMIT):
        self._connection = connection
        self._delay = delay
        self._limit = limit
        self._buffer: list[tuple] = []
        self._controls: list[tuple] = []
        #: Guards the two lists.
        self._lock = threading.Lock()
        #: Held while taking and sending a chunk, so chunks leave in order.
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        #: (router_id, task_id) of tasks whose messages are dropped.
        self._dropped: set[tuple[int, int]] = set()
        self._thread = threading.Thread(
            target=self._flush_loop, name="offload-flush", daemon=True
        )
        self._thread.start()

    def send(self, router_id: int, task_id: int, message: tuple) -> None:
        """Queue one message; any thread of the worker."""
        if message[0] == RAISED:
            message = _portable_failure(message)
        with self._lock:
            buffer = self._buffer
            buffer.append((router_id, task_id, message))
            count = len(buffer)
        if count == 1:
            self._wake.set()
        elif count >= self._limit:
            self.flush()

    def control(self, record: tuple) -> None:
        """Send a control record now, after every message already queued."""
        with self._lock:
            self._controls.append(record)
        self.flush()

    def flush(self) -> None:
        """Send what is buffered.  Raises OSError if the main process is gone."""
        with self._send_lock:
            with self._lock:
                messages, self._buffer = self._buffer, []
                controls, self._controls = self._controls, []
            if messages or controls:
                # Large buffers of the messages (a result, an item, a
                # progress array) go to shared memory, the rest in the pipe.
                segments = Outgoing()
                encoded = self._encode_messages(messages, segments)
                if controls:
                    # A task's results are written once its DONE is: the
                    # segments lent for them and left unused go back with it.
                    return_loans()
                chunk = dumps((encoded, self._encode_controls(controls)))
                if segments:
                    chunk += segments.trailer()
                try:
                    self._connection.send_bytes(chunk)
                except BaseException:
                    segments.discard()
                    raise
                # The main process unlinks them once it has mapped them.
                segments.keep()

    def close(self) -> None:
        """Flush, then stop the flush thread (worker exit)."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=1.0)
        self.flush()

    # Private ----------------------------------------------------------------

    def _flush_loop(self) -> None:
        wake = self._wake
        while True:
            wake.wait()
            if self._closed:
                return
            # Let a batch gather: one chunk, not one per message.
            time.sleep(self._delay)
            wake.clear()
            # After the clear: a close() during the sleep set the event
            # that clear() just undid, so look at the flag itself.
            if self._closed:
                return
            try:
                self.flush()
            except OSError:
                return  # the main process is gone; the watchdog ends us

    def _encode_messages(self, messages: list[tuple], segments: Outgoing) -> bytes:
        if not messages:
            return b""
        dropped = self._dropped
        if dropped:
            messages = [m for m in messages if (m[0], m[1]) not in dropped]
        try:
            return dumps(messages, segments)
        except Exception:  # noqa: BLE001 - find the culprit below
            segments.discard()
        kept = []
        for item in messages:
            router_id, task_id, message = item
            if (router_id, task_id) in dropped:
                continue
            try:
                dumps(item)
            except Exception as error:  # noqa: BLE001
                dropped.add((router_id, task_id))
                item = (router_id, task_id, _replacement(task_id, message, error))
            kept.append(item)
        return dumps(kept, segments)

    def _encode_controls(self, controls: list[tuple]) -> list[tuple]:
        if not controls:
            return controls
        try:
            dumps(controls)
        except Exception:  # noqa: BLE001 - find the culprit below
            pass
        else:
            return controls
        kept = []
        for record in controls:
            try:
                dumps(record)
            except Exception as error:  # noqa: BLE001
                if record[0] == DONE:
                    _, work_id, ok, value = record
                    record = (DONE, work_id, False, _unpicklable_value(ok, value, error))
                else:
                    continue  # queue items are pickled by put(), never here
            kept.append(record)
        return kept


def _portable_failure(message: tuple) -> tuple:
    """``message`` (RAISED), without its exception object unless that object
    survives a pickle round trip: many exception classes pickle but do not
    unpickle (an ``__init__`` with other arguments than ``args``), and the
    main process must never meet a chunk it cannot read."""
    info, exc = message[1]
    if exc is None:
        return message
    try:
        pickle.loads(dumps(exc))
    except Exception:  # noqa: BLE001 - any failure: send the description only
        return (RAISED, (info, None))
    return message


def _replacement(task_id: int, message: tuple, error: BaseException) -> tuple:
    """The RAISED message that stands for an unpicklable ``message``."""
    kind, arg = message
    if kind == RAISED:
        # The exception object does not pickle: send its description only.
        return (RAISED, (arg[0], None))
    if kind == RETURNED:
        what = "the result"
    elif isinstance(kind, str):
        what = f"a {kind!r} message"
    else:
        what = "a message"
    failure = RuntimeError(
        f"could not pickle {what} of task {task_id} to send it from the "
        f"worker process: {short_repr(arg)} ({error_text(error)})"
    )
    failure.__cause__ = error
    return raised_message(failure)


def _unpicklable_value(ok: bool, value: Any, error: BaseException) -> BaseException:
    what = "result" if ok else "exception"
    return RuntimeError(
        f"could not pickle the {what} of a work item to send it from the "
        f"worker process: {short_repr(value)} ({error_text(error)})"
    )
