"""Functions the behaviour suites run as tasks.

They live in an importable module (not in the test files) so that worker
processes and Dask workers can unpickle them by reference.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from typing import Any


def square(x: float) -> float:
    return x * x


def add(x: Any, y: Any = 0, *, z: Any = 0) -> Any:
    return x + y + z


def echo_kwargs(**kwargs: Any) -> dict:
    return kwargs


def fail(message: str = "bad") -> None:
    raise ValueError(message)


def fail_struct() -> None:
    struct.pack("<h", 10**9)


def raise_base(kind: str) -> None:
    if kind == "SystemExit":
        raise SystemExit(3)
    if kind == "KeyboardInterrupt":
        raise KeyboardInterrupt
    raise GeneratorExit


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def fail_unprintable() -> None:
    raise UnprintableError


class UnprintableResult:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def unprintable_result() -> UnprintableResult:
    return UnprintableResult()


def wait_for_file(path: str, timeout: float = 20.0) -> str:
    """Block (inside the task) until ``path`` exists; the test's release."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)
    return path


def touch(path: str) -> None:
    with open(path, "w"):
        pass


def mark_and_return(path: str, value: Any) -> Any:
    touch(path)
    return value


def mark_then_wait(started: str, release: str) -> str:
    """Create ``started``, then block until ``release`` exists."""
    touch(started)
    return wait_for_file(release)


def count_up(n: int) -> Iterator[int]:
    yield from range(n)


def count_up_and_return(n: int, result: Any) -> Iterator[int]:
    yield from range(n)
    return result


def iterate_until_released(started: str, release: str, closed: str) -> Iterator[int]:
    """Yield forever; mark when started; mark ``closed`` when closed."""
    try:
        i = 0
        while True:
            yield i
            if i == 0:
                touch(started)
                wait_for_file(release)
            i += 1
    finally:
        touch(closed)


def fail_after(n: int) -> Iterator[int]:
    yield from range(n)
    raise ValueError(f"failed after {n}")


def not_iterable() -> int:
    return 42


def wait_for_file_then_report(path: str, progress: Any) -> str:
    wait_for_file(path)
    progress((1, 1))
    return path


def report_then_wait(info: Any, release: str, progress: Any) -> str:
    """Reports ``info`` once, then waits for ``release``."""
    progress(info)
    return wait_for_file(release)


def report(n: int, progress: Any) -> int:
    for i in range(n):
        progress(i)
    return n


def report_until_cancelled(started: str, progress: Any) -> str:
    """Reports once, marks ``started``, then reports until TaskCancelled."""
    progress("first")
    touch(started)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        progress("more")
        time.sleep(0.001)
    return "never cancelled"


def report_then_fail(progress: Any) -> None:
    progress(1)
    raise ValueError("after progress")


def progress_kwargs(progress: Any, **kwargs: Any) -> dict:
    progress(sorted(kwargs))
    return kwargs
