"""Functions that run in the workers (threads, processes, Dask workers).

They live in their own small module so that both the standard pickle (raw
``ProcessPoolExecutor`` baselines, by reference) and cloudpickle (offload's
process and Dask contexts, registered by value) can carry them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


def noop() -> None:
    """The trivial task."""


def report_progress(count: int, progress: Callable[[Any], None]) -> int:
    """Report ``0 .. count-1`` through ``progress``; for ``submit_progress``."""
    for i in range(count):
        progress(i)
    return count


def generate(count: int) -> Iterator[int]:
    """Yield ``0 .. count-1``; for ``submit_iteration``."""
    yield from range(count)


# Raw process baseline: a plain multiprocessing queue, inherited by workers.

_queue: Any = None


def init_queue(queue: Any) -> None:
    """``ProcessPoolExecutor`` initializer: keep the queue for the tasks."""
    global _queue
    _queue = queue


def queue_messages(count: int) -> int:
    """Put ``0 .. count-1`` on the inherited queue."""
    put = _queue.put
    for i in range(count):
        put(i)
    return count
