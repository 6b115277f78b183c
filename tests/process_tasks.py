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


def _wait_for_child(pid: int, timeout: float) -> int:
    """Exit code of child ``pid``; killed (-9) if still running after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        time.sleep(0.005)


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def fork_and_forget_to_exit(how: str, progress: Any = None, timeout: float = 10.0) -> tuple:
    """Fork; the child then ends the way ``how`` says, without ``os._exit``.

    ``how``: "return" (returns from the task, as the parent does), "raise"
    (raises), or "progress" (reports progress, then returns what that did).
    The child's standard error is a pipe that the parent reads.  Returns
    ``("parent", child's exit code, what the child wrote)``.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.dup2(write, 2)
        if how == "raise":
            raise ValueError("raised in the forked child")
        if how == "progress":
            try:
                progress("from the forked child")
            except Exception as error:  # noqa: BLE001 - reported to the parent
                os.write(2, f"progress raised {type(error).__name__}: {error}\n".encode())
        return ("child", os.getpid())
    os.close(write)
    code = _wait_for_child(pid, timeout)
    return ("parent", code, _read_all(read))
