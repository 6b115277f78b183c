"""Tasks for test_control: tasks that ignore cancellation, block in C,
ignore SIGTERM, or start processes of their own.  Importable by worker
processes (top-level functions)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time


def _started(path: str | None, text: str = "") -> None:
    """Say that the task runs (and, optionally, a pid) by writing ``path``."""
    if path is not None:
        with open(path + ".tmp", "w") as file:
            file.write(text)
        os.replace(path + ".tmp", path)


def spin(seconds: float, path: str | None = None) -> str:
    """Pure Python that never looks at its cancel flag."""
    _started(path)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass
    return "spun"


def sleep_in_c(seconds: float, path: str | None = None) -> str:
    _started(path)
    time.sleep(seconds)
    return "slept"


def blocking_select(seconds: float, path: str | None = None) -> str:
    """Block in select() on a pipe nobody writes to."""
    read, write = os.pipe()
    try:
        _started(path)
        select.select([read], [], [], seconds)
    finally:
        os.close(read)
        os.close(write)
    return "selected"


def ignore_sigterm(seconds: float, path: str | None = None) -> str:
    """Ignore SIGTERM, then sleep in C: only SIGKILL ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _started(path)
    time.sleep(seconds)
    return "survived"


def spawn_grandchild(path: str, seconds: float = 60.0) -> str:
    """Start a process that ignores SIGTERM; write its pid to ``path``."""
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
         f"time.sleep({seconds})"],
    )
    _started(path, str(child.pid))
    child.wait()
    return "child ended"


def process_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (a zombie counts as gone: it is
    dead, and only its new parent, maybe not a reaping init, can reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def worker_pid() -> int:
    return os.getpid()


def memory_hog(megabytes: int) -> int:
    """Grow the worker's resident memory by ``megabytes`` and keep it."""
    global _HOG
    _HOG = bytearray(megabytes * 1024 * 1024)
    for index in range(0, len(_HOG), 4096):
        _HOG[index] = 1
    return os.getpid()


_HOG = bytearray()


def cooperative(seconds: float, path: str | None = None, progress=None) -> str:
    """Reports progress (so notices cancellation) for ``seconds``."""
    _started(path)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        progress(None)
        time.sleep(0.005)
    return "finished"


def echo_kwargs(**kwargs):
    return kwargs


def record(path: str, label: str) -> str:
    """Append ``label`` to ``path``: the order tasks started in."""
    with open(path, "a") as file:
        file.write(label + "\n")
    return label


def wait_for_file(path: str, timeout: float = 30.0) -> None:
    """Hold the worker until ``path`` exists (the test releases it)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.005)


def resident() -> int:
    """The worker's resident memory, as its recycling limit reads it."""
    from offload._backends.process.recycling import resident_bytes

    return resident_bytes()


def length_and_pid(data: bytes) -> tuple[int, int]:
    return len(data), os.getpid()
