"""Tasks that use ``context.event()`` (importable by name in workers)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any


def set_then_wait(started: Any, release: Any, timeout: float) -> tuple[bool, float]:
    """Set ``started``, wait for ``release``; return its answer and when."""
    started.set()
    answer = release.wait(timeout)
    return answer, time.monotonic()


def clear_and_read(event: Any) -> bool:
    """Clear ``event`` in the worker; return what it reads there after."""
    event.clear()
    return event.is_set()


def ping_pong(test_ready: Any, midpoint: Any) -> Iterator[set]:
    """Yield a set, then signal, then wait, then yield another (Traits
    Futures' own test of an item kept alive: a set, to be weakref'able)."""
    yield {1, 2, 3}
    midpoint.set()
    test_ready.wait(20)
    yield {4, 5, 6}


def progress_ping_pong(test_ready: Any, midpoint: Any, progress: Any) -> None:
    """``ping_pong`` as progress reports."""
    progress({1, 2, 3})
    midpoint.set()
    test_ready.wait(20)
    progress({4, 5, 6})


def new_set() -> set:
    """A result that can be weakly referred to."""
    return {1, 2, 3}
