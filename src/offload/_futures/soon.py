"""Call a function soon on the main thread, from the main thread.

A :class:`~offload.api.FutureGroup` notifies its observers once per batch
of delivered messages, not once per message: the first change of a batch
asks for a call after the batch, and that call notifies.  An event loop
delivers a batch in one callback (``Inbox._deliver``), so a call queued from
inside it runs after the whole batch (or time slice).

:class:`~offload.api.IEventLoop` has no "call soon" of its own; this module
makes one out of what it has: a pingee pinged from the main thread (a
zero-delay timer on Qt and wx), connected only while calls are queued.  For
asyncio the loop's own ``call_soon`` does it with no pingee (whose socket
pair would cost two descriptors per group).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from offload._event_loops.asyncio_loop import AsyncioEventLoop

logger = logging.getLogger("offload.futures")


def soon_caller(event_loop: Any) -> Callable[[Callable[[], None]], None]:
    """``call_soon(callback)`` for ``event_loop`` (main thread only).

    ``callback()`` then runs on the main thread once the loop turns.
    """
    # ETSEventLoop wraps the toolkit's loop: use that one directly.
    inner = getattr(event_loop, "toolkit_event_loop", None)
    if inner is not None:
        event_loop = inner
    if isinstance(event_loop, AsyncioEventLoop):
        return _AsyncioSoon(event_loop).call_soon
    return _PingeeSoon(event_loop).call_soon


class _AsyncioSoon:
    """The asyncio loop's ``call_soon``; at once if the loop is closed."""

    __slots__ = ("_loop",)

    def __init__(self, event_loop: AsyncioEventLoop) -> None:
        self._loop = event_loop.event_loop

    def call_soon(self, callback: Callable[[], None]) -> None:
        if self._loop.is_closed():
            callback()
        else:
            self._loop.call_soon(callback)


class _PingeeSoon:
    """Queued calls, run by a pingee connected while the queue is not empty."""

    __slots__ = ("_pingee", "_calls", "_connected")

    def __init__(self, event_loop: Any) -> None:
        self._pingee = event_loop.pingee(self._run)
        self._calls: deque[Callable[[], None]] = deque()
        self._connected = False

    def call_soon(self, callback: Callable[[], None]) -> None:
        self._calls.append(callback)
        if not self._connected:
            self._pingee.connect()
            self._connected = True
        self._pingee.ping()

    def _run(self) -> None:
        calls = self._calls
        while calls:
            callback = calls.popleft()
            try:
                callback()
            except Exception:
                # One caller's trouble must not starve the others.
                logger.exception("error in a call made soon on the main thread")
        # Nothing holds a timer or a descriptor between batches.
        self._pingee.disconnect()
        self._connected = False
