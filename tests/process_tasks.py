"""Tasks for the process-only tests, importable by worker processes."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from typing import Any

from offload.api import TaskCancelled


def die(code: int) -> None:
    """End the worker process at once with exit status ``code``."""
    os._exit(code)


def kill_myself(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(10)  # never reached: the signal ends the process first


def segfault() -> None:
    ctypes.string_at(0)


def write_pid_and_wait(path: str, timeout: float = 30.0) -> None:
    """Write this process's pid to ``path``, then sleep (to be killed)."""
    with open(path + ".tmp", "w") as file:
        file.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(timeout)


def return_lock() -> Any:
    return threading.Lock()


def progress_lock(progress: Any) -> None:
    progress(threading.Lock())


class NeedsTwoArguments(Exception):
    """Pickles, but unpickling calls ``__init__`` with one argument: fails."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code


def raise_needs_two() -> None:
    raise NeedsTwoArguments(7, "seven")


class LockedError(Exception):
    """Holds a lock, so it does not pickle at all."""

    def __init__(self) -> None:
        super().__init__("locked")
        self.lock = threading.Lock()


def raise_locked() -> None:
    raise LockedError()


def ignore_cancellation(started: str, progress: Any) -> None:
    """Report, then loop forever swallowing TaskCancelled (a stuck task)."""
    with open(started, "w"):
        pass
    while True:
        try:
            progress(None)
        except TaskCancelled:
            pass
        time.sleep(0.01)


def put_to(queue: Any, items: list) -> int:
    for item in items:
        queue.put(item)
    return len(items)


def pid() -> int:
    return os.getpid()


SIGKILL = signal.SIGKILL
