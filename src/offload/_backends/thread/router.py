"""Router for tasks running in threads of this process."""

from __future__ import annotations

import time
from collections.abc import Callable

from offload._event_loops.interface import IEventLoop
from offload._routing.inbox import DEFAULT_TIME_SLICE, Inbox

#: Undelivered messages beyond which a sending worker yields the GIL now and
#: then (soft backpressure, see ``ThreadRouter``).
BACKLOG_LIMIT = 2_000

#: Past the limit, a worker yields once per this many messages (a power of 2).
YIELD_EVERY = 64


class ThreadRouter(Inbox):
    """Worker threads put their messages straight into the main-thread inbox.

    Soft backpressure: a worker thread that sends in a tight loop keeps the
    GIL for whole switch intervals (5 ms), so it can produce messages several
    times faster than the main thread delivers them, and a GUI waits for the
    GIL between ticks (``benchmarks/README.md`` has the figures).  So, once
    more than ``BACKLOG_LIMIT`` messages wait, every ``YIELD_EVERY``-th user
    message (progress, iteration item, custom) also calls ``time.sleep(0)``,
    which releases the GIL for the main thread to take.  It never blocks, but
    it is a system call: once per message
    it made a task flooding a main thread that was busy elsewhere (a test
    not running its loop yet, say) a hundred times slower; once per 64 the
    main thread still gets the GIL every few dozen microseconds of the
    worker's time.

    Control messages (started, returned, ...) never yield: in a burst of
    100,000 short calls the main thread is busy submitting, and yielding
    there only cost GIL hand-offs (20 s instead of 14.5 s).
    """

    def __init__(self, event_loop: IEventLoop, time_slice: float = DEFAULT_TIME_SLICE):
        super().__init__(event_loop, time_slice)
        self._sender = self._make_sender()

    @property
    def sender(self) -> Callable[[int, tuple], None]:
        return self._sender

    def _make_sender(self) -> Callable[[int, tuple], None]:
        # Inbox.put, as a closure over the deque: this runs once per message
        # in the workers, the hottest path there is.
        items = self._items
        append = items.append
        yield_gil = time.sleep
        ping = self._pingee.ping

        def send(task_id: int, message: tuple) -> None:
            append((task_id, message))
            if self._armed:
                # Inbox._wake, inline: a task's STARTED, early on the
                # path of a worker just woken, comes here.
                self._armed = False
                if self._blocking:
                    self._arrived.set()
                ping()
            else:
                backlog = len(items)
                if (
                    backlog > BACKLOG_LIMIT
                    and not backlog & (YIELD_EVERY - 1)
                    and message[0].__class__ is str
                ):
                    yield_gil(0)

        return send
