"""Router for tasks running in threads of this process."""

from __future__ import annotations

from collections.abc import Callable

from offload._event_loops.interface import IEventLoop
from offload._routing.inbox import DEFAULT_TIME_SLICE, Inbox


class ThreadRouter(Inbox):
    """Worker threads put their messages straight into the main-thread inbox."""

    def __init__(self, event_loop: IEventLoop, time_slice: float = DEFAULT_TIME_SLICE):
        super().__init__(event_loop, time_slice)
        self._sender = self._make_sender()

    @property
    def sender(self) -> Callable[[int, tuple], None]:
        return self._sender

    def _make_sender(self) -> Callable[[int, tuple], None]:
        # Inbox.put, as a closure over the deque's bound append: this runs
        # once per message in the workers, the hottest path there is.
        append = self._items.append

        def send(task_id: int, message: tuple) -> None:
            append((task_id, message))
            if self._armed:
                self._armed = False
                self._wake()

        return send
