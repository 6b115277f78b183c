"""Tasks the pause suites run (importable, so workers unpickle them by name)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any


def write(path: str, value: Any) -> None:
    """Write ``value`` to ``path`` atomically (a reader never sees half)."""
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(str(value))
    os.replace(temporary, path)


def read(path: str) -> int | None:
    try:
        with open(path, encoding="utf-8") as file:
            return int(file.read())
    except FileNotFoundError:
        return None


def ticks(at: str, closed: str) -> Iterator[int]:
    """Yield 0, 1, 2, ... for ever; ``at`` holds the last index made.

    The short sleep only spares the shared CPU; nothing waits on it.
    """
    try:
        index = 0
        while True:
            write(at, index)
            yield index
            index += 1
            time.sleep(0.001)
    finally:
        write(closed, 1)


def count_from_start(started: str, count: int) -> Iterator[int]:
    """Touch ``started`` when the generator first runs, then yield ``count`` items."""
    write(started, 1)
    yield from range(count)


def receive(count: int) -> Iterator[int]:
    """Yield 0 .. count-1; return the values each yield received."""
    received = []
    for index in range(count):
        received.append((yield index))
    return received


def receive_until(end: str) -> Iterator[Any]:
    """Yield each received value back until one equals ``end``."""
    value = yield "ready"
    while value != end:
        value = yield value
    return "ended"


def report_ticks(at: str, progress: Callable[[Any], None]) -> None:
    """Report 0, 1, 2, ... for ever; ``at`` holds the last index reported."""
    index = 0
    while True:
        write(at, index)
        progress(index)
        index += 1
        time.sleep(0.001)


def report_from_start(started: str, count: int, progress: Callable[[Any], None]) -> int:
    """Touch ``started``, then report 0 .. count-1."""
    write(started, 1)
    for index in range(count):
        progress(index)
    return count


def dask_gate_state(key: str) -> tuple[bool, int] | None:
    """On a Dask worker: what the pause gate of ``key`` has received."""
    from offload._backends.dask.pausing import gates

    gate = gates.get(key)
    return None if gate is None else gate.state()


def step_ticks(at: str, reporter: Any) -> None:
    """Steps 0, 1, 2, ... for ever; ``at`` holds the index of the last step
    asked for (``reporter.step`` is the pause point)."""
    index = 0
    while True:
        write(at, index)
        reporter.step(f"step {index}")
        index += 1
        time.sleep(0.001)


def gather_values(end: Any) -> Iterator[int]:
    """Keep the values sent to it until ``end``; yield how many it has."""
    got: list[Any] = []
    while True:
        value = yield len(got)
        if value == end:
            return got
        if value is not None:
            got.append(value)
        time.sleep(0.001)
