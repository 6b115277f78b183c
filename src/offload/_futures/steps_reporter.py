"""The worker side of a steps task: the reporter, and how it coalesces.

What runs where::

    worker (thread, process or Dask worker)            main thread
    ---------------------------------------            -----------
    task thread: reporter.step(msg)
      interval since the last update passed? ─ yes ─▶ send ─▶ StepsFuture
      no: hold the update (the next one replaces it)
    flusher thread (one per process, while needed):
      at the held update's due time ───────────────▶ send
    task thread, task ends: held update? ──────────▶ send, then the end

Coalescing happens where the updates are made, so that a task stepping
through 100,000 items a second costs a pickle, a pipe or a Dask event, and
a main-thread trait change, only 25 times a second.  The rate is the
reporter's ``max_rate`` (the task specification's, so that an executor
option can set it); ``None`` sends every update.

Two rules keep what the user sees right:

- an update that was held is sent at its due time even if the task does
  not step again (a quick step followed by a slow one shows the slow one's
  message while it runs): the flusher thread sends it;
- the last update is never lost: when the task ends, whatever the way, the
  held update goes first, so the future's final ``complete`` and
  ``message`` are the last ones reported, delivered before its end.
"""

from __future__ import annotations

import abc
import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from offload._futures.pausing import PausePoint, attention_of

#: Message kind of one steps update; its argument is
#: ``(complete, message, seconds since the task started)``.
STEPS = "steps"

#: Updates per second a steps future gets by default (Qt's own progress
#: dialog caps its signals at the same rate: faster is invisible).
DEFAULT_MAX_RATE = 25.0

#: Seconds the flusher thread stays up with nothing to flush, waiting for
#: the next held update, before it ends (a thread start costs ~0.1 ms).
FLUSHER_LINGER = 0.2

_now = time.monotonic


class IStepsReporter(abc.ABC):
    """What a steps task's ``reporter`` argument does; see
    :func:`~offload.api.submit_steps`.

    Its methods are called in the worker that runs the task, never on the
    main thread.  Work is counted in units (``total`` of them, given to
    ``submit_steps``): ``step(message, size=n)`` starts a step of ``n``
    units, which counts as complete once the next ``step`` or ``stop``
    comes.
    """

    @abc.abstractmethod
    def step(self, message: str, *, size: int = 1) -> None:
        """Start a step of ``size`` units, described by ``message``.

        The previous step, if any, is now complete.  While the future is
        paused, the call waits (before the step starts) until it is
        resumed or cancelled.

        Parameters
        ----------
        message : str
            What this step does; the future's ``message`` shows it.
        size : int, optional
            Units of work in this step (>= 0).  Default 1.

        Raises
        ------
        TaskCancelled
            Once cancellation was asked for; let it propagate, and the task
            ends CANCELLED.
        """

    @abc.abstractmethod
    def stop(self, message: str) -> None:
        """Complete the current step and show ``message``: the work is done.

        Waits while the future is paused, as :meth:`step` does.

        Raises
        ------
        TaskCancelled
            Once cancellation was asked for.
        """


class StepsReporter(IStepsReporter):
    """The ``reporter`` a steps task receives; used in the worker.

    ``step`` and ``stop`` run in the task's thread; a held update is sent
    by this process's flusher thread or when the task ends (:meth:`close`).
    """

    __slots__ = (
        "_send", "_cancelled", "_attention", "_point", "_complete", "_pending",
        "_message", "_interval", "_start", "_next_send", "_held", "_closed", "_lock",
    )

    def __init__(
        self,
        send: Callable[[tuple], None],
        cancelled: Callable[[], bool],
        message: str,
        max_rate: float | None = DEFAULT_MAX_RATE,
    ) -> None:
        self._send = send
        self._cancelled = cancelled
        # As cheap as cancelled(): true once cancelled or paused; only then
        # is a pause point made.
        self._attention = attention_of(cancelled)
        self._point: PausePoint | None = None
        self._complete = 0
        self._pending = 0
        self._message = message
        self._interval = 0.0 if max_rate is None else 1.0 / max_rate
        self._start = _now()
        #: Clock time from which the next update may be sent at once.
        self._next_send = self._start
        #: An update is waiting for its due time.
        self._held = False
        #: The task ended: nothing more is sent.
        self._closed = False
        #: Guards the state against the flusher thread.
        self._lock = threading.Lock()

    def step(self, message: str, *, size: int = 1) -> None:
        """Start a step of ``size`` units described by ``message``.

        The step before it (if any) counts as complete.  Blocks while the
        future is paused; raises :class:`~offload.api.TaskCancelled` once
        cancellation was asked for.
        """
        if self._attention():
            self._pause_point()
        if not isinstance(message, str):
            raise TypeError(f"step(message) needs a str message, got {message!r}")
        if not isinstance(size, int) or isinstance(size, bool):
            raise TypeError(f"step(message, size=...) needs an int size, got {size!r}")
        if size < 0:
            raise ValueError(f"step(message, size=...) needs a size >= 0, got {size}")
        with self._lock:
            self._complete += self._pending
            self._pending = size
            self._message = message
            self._publish()

    def stop(self, message: str) -> None:
        """Complete the current step and show ``message``: the work is done.

        Blocks while the future is paused; raises
        :class:`~offload.api.TaskCancelled` once cancellation was asked for.
        """
        if self._attention():
            self._pause_point()
        if not isinstance(message, str):
            raise TypeError(f"stop(message) needs a str message, got {message!r}")
        with self._lock:
            self._complete += self._pending
            self._pending = 0
            self._message = message
            self._publish()

    def close(self) -> None:
        """The task ended: send the held update, if any, then nothing more.

        Called in the task's thread before the task's end is sent, so the
        last update is delivered before the future is done.
        """
        with self._lock:
            if self._held:
                self._send_now(_now())
            self._closed = True
        point = self._point
        if point is not None:
            point.close()

    def _pause_point(self) -> None:
        """Cancelled, paused or knocked: wait or raise (task's thread)."""
        point = self._point
        if point is None:
            point = self._point = PausePoint(self._cancelled)
        point.raise_if_cancelled()

    @property
    def ended(self) -> bool:
        """The task ended: nothing is left to flush (read by the flusher
        thread without the lock: a stale False costs one call)."""
        return self._closed

    def flush_due(self) -> None:
        """Send the held update (the flusher thread, at its due time)."""
        with self._lock:
            now = _now()
            # Not before its time: a late flusher may come for an update
            # that a step has sent since, the one held now being due later
            # (and scheduled for then).
            if self._held and not self._closed and now >= self._next_send:
                self._send_now(now)

    # Private (called with the lock held) -----------------------------------

    def _publish(self) -> None:
        now = _now()
        if now >= self._next_send:
            self._send_now(now)
        elif not self._held:
            self._held = True
            _flusher.schedule(self._next_send, self)

    def _send_now(self, now: float) -> None:
        self._held = False
        self._next_send = now + self._interval
        self._send((STEPS, (self._complete, self._message, now - self._start)))


class _Flusher:
    """Sends held updates at their due time: one thread per process, which
    runs only while updates are held (and :data:`FLUSHER_LINGER` after).
    Serves steps reporters and rate-limited progress reporters alike."""

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        #: Heap of (due time, sequence number, reporter).
        self._due: list[tuple[float, int, Any]] = []
        self._order = itertools.count()
        self._running = False

    def schedule(self, due: float, reporter: Any) -> None:
        """Call ``reporter.flush_due()`` at clock time ``due`` (any thread),
        unless ``reporter.ended`` by then; ``reporter`` is any object with
        ``flush_due()`` and ``ended``."""
        with self._condition:
            heapq.heappush(self._due, (due, next(self._order), reporter))
            if not self._running:
                self._running = True
                threading.Thread(
                    target=self._run, name="offload-steps-flusher", daemon=True
                ).start()
            elif self._due[0][2] is reporter:
                self._condition.notify()

    def _run(self) -> None:
        condition, due = self._condition, self._due
        with condition:
            while True:
                if not due:
                    condition.wait(FLUSHER_LINGER)
                    if not due:
                        self._running = False
                        return
                    continue
                if due[0][2].ended:
                    # Its task ended, and sent what was held: drop it now,
                    # rather than wake up at its due time for nothing (a
                    # burst of short tasks would wake this thread per task).
                    heapq.heappop(due)
                    continue
                wait = due[0][0] - _now()
                if wait > 0:
                    condition.wait(wait)
                    continue
                reporter = heapq.heappop(due)[2]
                # Not under this lock: the reporter's lock is taken before
                # this one by a step that schedules.
                condition.release()
                try:
                    reporter.flush_due()
                except Exception:  # noqa: BLE001 - the channel is closing
                    pass
                finally:
                    condition.acquire()

    def reset(self) -> None:
        """In a forked child: the parent's thread does not exist here."""
        self._condition = threading.Condition(threading.Lock())
        self._due = []
        self._running = False


_flusher = _Flusher()

if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_flusher.reset)


def reporter_checks(total: Any, message: Any) -> None:
    """Check ``submit_steps``' ``total`` and ``message`` (main thread)."""
    if not isinstance(total, int) or isinstance(total, bool):
        raise TypeError(
            f"submit_steps(executor, total, message, callable, ...) needs an int "
            f"total (units of work, 0 if unknown), got {total!r}"
        )
    if total < 0:
        raise ValueError(f"submit_steps needs a total >= 0 (0 if unknown), got {total}")
    if not isinstance(message, str):
        raise TypeError(
            f"submit_steps(executor, total, message, callable, ...) needs a str "
            f"message, got {message!r}"
        )

#: ``schedule_flush(due, reporter)``: call ``reporter.flush_due()`` at clock
#: time ``due``, on this process's flusher thread (any thread).  Shared by
#: every reporter that coalesces (steps, and progress with a rate limit).
schedule_flush = _flusher.schedule
