"""Tasks the reliability tests control, importable by worker processes.

They live outside the test modules so that a worker process or a Dask
worker unpickles them by reference without importing pytest or hypothesis.

The scripted task is remote-controlled through files, which work the same
for threads, processes and Dask workers on this machine: the test writes
command files ``<directory>/<number>-<k>`` (k = 0, 1, ...), atomically, and
the task carries them out in order.  When its callable starts, it creates
``<directory>/started-<number>``, so that a test can tell a task that never
ran from one that ran and was cancelled.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable
from typing import Any

from traits.api import Any as AnyTrait
from traits.api import List

from offload._futures.pausing import PausableFuture, PausePoint, attention_of
from offload.api import ITaskSpecification, TaskCancelled

#: How long a task waits for its next command before giving up (seconds).
COMMAND_TIMEOUT = 60.0

#: Message kind of a scripted task's messages.
MESSAGE = "message"


def write_command(directory: str, number: int, index: int, command: str) -> None:
    """Give task ``number`` its ``index``-th command (main thread).

    Commands: ``"send N"`` (send N messages), ``"return"`` and ``"raise"``.
    """
    path = os.path.join(directory, f"{number}-{index}")
    with open(path + ".tmp", "w") as file:
        file.write(command)
    os.replace(path + ".tmp", path)


def started_marker(directory: str, number: int) -> str:
    """The file that task ``number`` creates when its callable starts."""
    return os.path.join(directory, f"started-{number}")


class ScriptedTask:
    """Worker side: carry out commands from files until told to end.

    Each message is ``(MESSAGE, (number, sequence))`` with sequence 0, 1, ...
    across the task's whole life.  If ``honours_cancel``, the task ends (by
    raising ``TaskCancelled``) as soon as it sees that it was cancelled while
    waiting for a command; otherwise it ignores cancellation.
    """

    __slots__ = ("directory", "number", "honours_cancel")

    def __init__(self, directory: str, number: int, honours_cancel: bool) -> None:
        self.directory = directory
        self.number = number
        self.honours_cancel = honours_cancel

    def __getstate__(self) -> tuple:
        return (self.directory, self.number, self.honours_cancel)

    def __setstate__(self, state: tuple) -> None:
        self.directory, self.number, self.honours_cancel = state

    def __call__(self, send: Callable[[tuple], None], cancelled: Callable[[], bool]) -> Any:
        with open(started_marker(self.directory, self.number), "w"):
            pass
        # Each message is a pause point, as a progress report is: a paused
        # task stops before sending it.  Cancelled there, a task that
        # honours cancellation ends; one that does not carries on.
        attention = attention_of(cancelled)
        point: PausePoint | None = None
        try:
            sequence = 0
            index = 0
            deadline = time.monotonic() + COMMAND_TIMEOUT
            while True:
                path = os.path.join(self.directory, f"{self.number}-{index}")
                delay = 0.0005
                while not os.path.exists(path):
                    if self.honours_cancel and cancelled():
                        raise TaskCancelled(f"task {self.number} saw the cancellation")
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"task {self.number}: no command {index}")
                    time.sleep(delay)  # the task polls for its next command
                    delay = min(delay * 2, 0.005)
                with open(path) as file:
                    command = file.read().split()
                index += 1
                if command[0] == "send":
                    for _ in range(int(command[1])):
                        if attention():
                            if point is None:
                                point = PausePoint(cancelled)
                            if point.stop() and self.honours_cancel:
                                raise TaskCancelled(f"task {self.number} saw the cancellation")
                        send((MESSAGE, (self.number, sequence)))
                        sequence += 1
                elif command[0] == "return":
                    return ("returned", self.number, sequence)
                elif command[0] == "raise":
                    raise ValueError(f"task {self.number} raised after {sequence}")
                else:
                    raise AssertionError(f"unknown command {command!r}")
        finally:
            if point is not None:
                point.close()


class ScriptedFuture(PausableFuture):
    """Main-thread side: logs every message and every state change, in order.
    Pausable: the task stops before its next message while paused."""

    #: ("state", new) and ("message", sequence) entries in arrival order.
    log = List()

    #: The public state when each message was processed.
    states_at_message = List()

    #: Set by the test to check invariants on every change.
    checker = AnyTrait()

    def _process_message(self, arg: tuple) -> None:
        self.log.append(("message", arg[1]))
        self.states_at_message.append(self.state)


class ScriptedSpec(ITaskSpecification):
    """Specification of one scripted task."""

    def __init__(self, directory: str, number: int, honours_cancel: bool) -> None:
        self.directory = directory
        self.number = number
        self.honours_cancel = honours_cancel

    def task(self) -> ScriptedTask:
        return ScriptedTask(self.directory, self.number, self.honours_cancel)

    def future(self, cancel: Callable[[], None]) -> ScriptedFuture:
        return ScriptedFuture(_cancel=cancel)


# Plain functions for the race, stress and fault tests -----------------------


def report_many(first: int, count: int, progress: Any) -> int:
    """Report ``first, first + 1, ...`` ``count`` times; return ``count``."""
    for value in range(first, first + count):
        progress(value)
    return count


def short_task(value: int) -> int:
    return value


def report_then_maybe_fail(number: int, count: int, fail: bool, mark: str | None, progress: Any) -> int:
    """Report ``count`` values, mark ``mark`` (if given), then return or raise."""
    for value in range(count):
        progress(value)
    if mark is not None:
        with open(mark, "w"):
            pass
    if fail:
        raise ValueError(f"task {number} failed on purpose")
    return number


def spin_then_end(number: int, spins: int, fail: bool, marker: str, progress: Any) -> int:
    """Mark ``marker``, report ``spins`` times, then return or raise.

    The race test cancels these at random moments: the marker tells it that
    the callable ran, the number of reports how far it got.
    """
    with open(marker, "w"):
        pass
    for value in range(spins):
        progress(value)
    if fail:
        raise ValueError(f"task {number} failed on purpose")
    return number


def block_ignoring_cancel(release: str, started: str | None = None) -> str:
    """Block until ``release`` exists, whatever the cancellation says."""
    if started is not None:
        with open(started, "w"):
            pass
    deadline = time.monotonic() + COMMAND_TIMEOUT
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} never appeared")
        time.sleep(0.005)
    return "released"


def block_forever(started: str | None = None) -> None:
    """Never return, never look at cancellation (for the exit tests)."""
    if started is not None:
        with open(started, "w"):
            pass
    while True:
        time.sleep(0.05)


class UnpicklableError(Exception):
    """An exception that cannot be pickled: its reduction raises."""

    def __reduce__(self) -> Any:
        raise pickle.PicklingError("UnpicklableError refuses to be pickled")


def raise_unpicklable(message: str) -> None:
    raise UnpicklableError(message)


class UnunpicklableError(Exception):
    """An exception that pickles, but whose unpickling fails."""

    def __init__(self, message: str, extra: int) -> None:
        super().__init__(message)
        self.extra = extra

    # Default reduction passes self.args == (message,) to __init__, which
    # needs two arguments: unpickling raises TypeError.


def raise_ununpicklable(message: str) -> None:
    raise UnunpicklableError(message, 1)


def big_result(megabytes: int) -> bytes:
    return bytes(range(256)) * (megabytes * 4096)


def pid_then_wait(release: str, progress: Any) -> int:
    """Report this worker's pid, then wait for ``release``."""
    progress(os.getpid())
    deadline = time.monotonic() + COMMAND_TIMEOUT
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} never appeared")
        time.sleep(0.005)
    return os.getpid()


def report_pid_and_work(number: int, seconds: float, progress: Any) -> int:
    """Report this worker's pid, work ``seconds``, return ``number``."""
    progress(os.getpid())
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.001)
    return number


def _refuse_to_load() -> Any:
    raise RuntimeError("this value refuses to be unpickled")


class UnloadableResult:
    """Pickles fine; unpickling it raises."""

    def __reduce__(self) -> Any:
        return (_refuse_to_load, ())


def return_unloadable() -> UnloadableResult:
    return UnloadableResult()


def report_then_raise_ununpicklable(count: int, progress: Any) -> None:
    """Report ``count`` values, then raise an exception that cannot be unpickled."""
    for value in range(count):
        progress(value)
    raise UnunpicklableError("no unpickling", 1)
