"""One shared timer thread for task time limits.

Why a thread of our own, not the event loop's timers: the event loop
interface offers only "call this soon on the main thread", and a time
limit must fire even while the main thread is busy (a GUI handler that
blocks is one of the things a time limit guards against).  Why one thread
for every limit: a ``threading.Timer`` per task would start a thread per
task.  The thread sleeps on a condition until the earliest deadline (it
never polls), runs only while some limit is armed, and ends once none is,
so that an application (or a test's leak check) that uses no time limit
never sees it.  Tasks without a limit never touch this module.

What runs where::

    any thread                        timer thread
    ----------                        ------------
    entry = call_at(deadline, fn)     wait until the earliest deadline
    cancel(entry)  (or it fires)  ──▶ fn()   (outside the lock)
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("offload.executor")


class Timer:
    """Calls functions at deadlines (``time.monotonic()``), in one thread."""

    def __init__(self, name: str = "offload-timer") -> None:
        self._name = name
        self._wake = threading.Condition(threading.Lock())
        #: [deadline, sequence, callback or None (cancelled)]
        self._heap: list[list] = []
        self._armed = 0
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def call_at(self, deadline: float, callback: Callable[[], None]) -> list:
        """Call ``callback()`` in the timer thread at ``deadline``; return an
        entry for :meth:`cancel`.  Any thread."""
        entry = [deadline, next(self._order), callback]
        with self._wake:
            heapq.heappush(self._heap, entry)
            self._armed += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._heap[0] is entry:
                self._wake.notify()
        return entry

    def cancel(self, entry: list) -> None:
        """Forget ``entry``, unless it fired already.  Any thread."""
        with self._wake:
            if entry[2] is None:
                return
            entry[2] = None
            self._armed -= 1
            if not self._armed:
                self._heap.clear()
                self._wake.notify()  # nothing armed: the thread ends

    def _run(self) -> None:
        heap = self._heap
        while True:
            with self._wake:
                while True:
                    while heap and heap[0][2] is None:
                        heapq.heappop(heap)
                    if not heap:
                        self._thread = None
                        return
                    wait = heap[0][0] - time.monotonic()
                    if wait <= 0:
                        entry = heapq.heappop(heap)
                        callback, entry[2] = entry[2], None
                        self._armed -= 1
                        break
                    self._wake.wait(wait)
            try:
                callback()
            except Exception:  # noqa: BLE001 - the other limits still fire
                logger.exception("offload: a task's time limit failed to fire")


#: The timer of every executor's time limits.
TIMER = Timer()
