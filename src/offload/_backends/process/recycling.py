"""When a worker process retires: ``max_tasks_per_worker`` and
``max_worker_memory`` of ``MultiprocessingContext``.

A :class:`Limits` is made in the application, sent to each worker process
as it starts, and asked there, by the worker's main thread, after each
task: past either limit the worker reports RETIRE, then its task's DONE,
and exits; the pool starts its replacement as the RETIRE arrives.

Resident memory is read from ``/proc/self/statm`` (Linux: resident pages
times the page size, the memory the worker holds now).  Where there is no
``/proc`` (macOS), ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` stands in:
the *peak* resident size, which never goes down, so a worker that was over
the limit once retires after its task, as it should.  No psutil needed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int:
    """Resident memory of this process, in bytes (see the module's notes)."""
    try:
        with open("/proc/self/statm", "rb") as file:
            return int(file.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Bytes on macOS, KiB elsewhere.
        return peak if sys.platform == "darwin" else peak * 1024


class Limits:
    """How long a worker process serves; picklable, sent to each worker.

    Parameters
    ----------
    max_tasks : int or None
        Retire after this many tasks.
    max_memory : int or None
        Retire after a task that leaves more than this many bytes resident.
    """

    __slots__ = ("max_tasks", "max_memory", "_count")

    def __init__(self, max_tasks: int | None, max_memory: int | None) -> None:
        self.max_tasks = max_tasks
        self.max_memory = max_memory
        self._count = 0

    def __getstate__(self) -> tuple:
        return (self.max_tasks, self.max_memory)

    def __setstate__(self, state: tuple) -> None:
        self.max_tasks, self.max_memory = state
        self._count = 0

    def reached(self, not_counted: Callable[[], int] = lambda: 0) -> bool:
        """Count one more task; True if the worker must retire now (worker
        process, main thread, after each task).  ``not_counted()`` gives
        the resident bytes that are not the worker's own (the application's
        segments it keeps mapped)."""
        self._count += 1
        if self.max_tasks is not None and self._count >= self.max_tasks:
            return True
        return (
            self.max_memory is not None
            and resident_bytes() - not_counted() > self.max_memory
        )


def make_limits(max_tasks_per_worker: Any, max_worker_memory: Any) -> Limits | None:
    """Check the two context options; the :class:`Limits`, or None if both
    are None.  Raises TypeError / ValueError naming the bad option."""
    for name, value in (
        ("max_tasks_per_worker", max_tasks_per_worker),
        ("max_worker_memory", max_worker_memory),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be a positive int or None, got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if max_tasks_per_worker is None and max_worker_memory is None:
        return None
    return Limits(max_tasks_per_worker, max_worker_memory)
