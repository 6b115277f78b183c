"""Functions that tests/test_dask_payloads.py runs on Dask workers."""

from __future__ import annotations

import time
from typing import Any

from task_functions import touch, wait_for_file


def total(payload: Any, release: str | None = None) -> float:
    """The sum of ``payload`` (an array, or bytes), once ``release`` exists."""
    if release is not None:
        wait_for_file(release, timeout=40)
    if isinstance(payload, (bytes, bytearray)):
        return float(sum(payload))
    return float(payload.sum())


def write_then_total(payload: Any, value: float, release: str) -> float:
    """Once ``release`` exists, write to this task's copy of ``payload``,
    then sum it."""
    wait_for_file(release, timeout=40)
    payload[:] = value
    return float(payload.sum())


def hold_until_cancelled(payload: Any, started: str, progress: Any) -> float:
    """Mark ``started``, then report until cancelled (TaskCancelled ends it)."""
    touch(started)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        progress(len(payload))
        time.sleep(0.01)
    return -1.0


def hold_ignoring_cancel(payload: Any, started: str) -> float:
    """Mark ``started``, then sleep for a minute: only a force-cancel ends it."""
    touch(started)
    time.sleep(60)
    return float(len(payload))


def total_of_parts(parts: Any, release: str | None = None) -> float:
    """The sum of every array in ``parts`` (lists, tuples and dicts of
    arrays), once ``release`` exists."""
    if release is not None:
        wait_for_file(release, timeout=40)
    if isinstance(parts, dict):
        parts = list(parts.values())
    if isinstance(parts, (list, tuple)):
        return sum(total_of_parts(part) for part in parts)
    return float(parts.sum())
