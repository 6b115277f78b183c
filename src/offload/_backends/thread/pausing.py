"""The pause gate of a task on a thread: one condition variable, shared.

Main thread and worker thread hold the same :class:`ThreadPauseGate`:
``pause()``, ``resume()``, ``send()`` and ``cancel()`` change it under its
condition and notify; the task waits on the condition at its pause point,
so a paused task costs no CPU and wakes as soon as it is notified.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any


class ThreadPauseGate:
    """Pause state and sent values of one task running on a thread.

    Made on the main thread by the first ``pause()`` or ``send()`` of the
    task's future.  The main-thread methods never block for long (the
    lock is held only to change a few attributes); :meth:`checkpoint`
    blocks the worker thread while paused.

    Parameters
    ----------
    knock : callable
        Tells the task, at no cost to it, that it must look at the gate
        (the cancel flag's ``knock``).
    """

    __slots__ = ("_knock", "_condition", "_paused", "_values")

    def __init__(self, knock: Callable[[], None]) -> None:
        self._knock = knock
        self._condition = threading.Condition(threading.Lock())
        self._paused = False
        self._values: deque[Any] = deque()

    # Main thread ------------------------------------------------------------

    def pause(self) -> None:
        with self._condition:
            self._paused = True
        self._knock()

    def resume(self) -> None:
        with self._condition:
            self._paused = False
            self._condition.notify_all()

    def send(self, value: Any) -> None:
        with self._condition:
            self._values.append(value)
        self._knock()

    def cancel(self) -> None:
        # The flag is set already: a waiting task wakes and sees it.
        with self._condition:
            self._condition.notify_all()

    def close(self) -> None:
        """The future is done: drop what the task did not take."""
        with self._condition:
            self._paused = False
            self._values.clear()
            self._condition.notify_all()

    # Worker thread ----------------------------------------------------------

    def checkpoint(self, cancelled: Callable[[], bool]) -> None:
        """Block while paused, until resumed or ``cancelled()``."""
        with self._condition:
            while self._paused and not cancelled():
                self._condition.wait()

    def take(self, default: Any) -> Any:
        """The oldest value sent and not taken yet, or ``default``."""
        try:
            return self._values.popleft()
        except IndexError:
            return default
