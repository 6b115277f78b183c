"""Functions that the Dask tests run on workers (importable by name there)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from task_functions import touch, wait_for_file


def pid_then_wait(pid_file: str, release: str) -> int:
    """Write this worker's pid to ``pid_file``, then wait for ``release``."""
    tmp = pid_file + ".tmp"
    with open(tmp, "w") as file:
        file.write(str(os.getpid()))
    os.replace(tmp, pid_file)
    wait_for_file(release, timeout=30)
    return os.getpid()


def progress_pid_then_wait(pid_file: str, release: str, progress: Any) -> int:
    """Report once, then as ``pid_then_wait``."""
    progress("running")
    return pid_then_wait(pid_file, release)


def unpicklable_result() -> Any:
    return threading.Lock()


class UnpicklableError(Exception):
    def __init__(self) -> None:
        super().__init__("cannot travel")
        self.lock = threading.Lock()


def raise_unpicklable() -> None:
    raise UnpicklableError()


def count_messages(n: int, progress: Any) -> int:
    for i in range(n):
        progress(i)
    return n


def report_then_block(started: str, progress: Any) -> str:
    """Report once, mark ``started``, then check for cancellation by hand."""
    progress(0)
    touch(started)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if progress.cancelled():
            return "saw the cancel"
        time.sleep(0.001)
    return "never cancelled"
