"""Router for tasks running in threads of this process."""

from __future__ import annotations

from collections.abc import Callable

from offload._event_loops.interface import IEventLoop
from offload._routing.inbox import DEFAULT_TIME_SLICE, Inbox


class ThreadRouter(Inbox):
    """Worker threads put their messages straight into the main-thread inbox."""

    def __init__(self, event_loop: IEventLoop, time_slice: float = DEFAULT_TIME_SLICE):
        super().__init__(event_loop, time_slice)
        self._sender = self._send

    @property
    def sender(self) -> Callable[[int, tuple], None]:
        return self._sender

    def _send(self, task_id: int, message: tuple) -> None:
        # Same as Inbox.put, inlined: this is the hot path of every message.
        self._items.append((task_id, message))
        if self._armed:
            self._armed = False
            self._wake()
