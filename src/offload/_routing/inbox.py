"""The main-thread end shared by every router: batching and dispatch.

Producers (worker threads, or the threads that read from worker processes)
append ``(task_id, message)`` items to a deque.  Only the producer that finds
the inbox *armed* pings the event loop, and disarms it; the main thread
re-arms it once it has drained the deque, then looks again.  So the loop is
woken once per batch, not once per message, and no item can be left behind:
an item appended before the arming is seen by the second look, one appended
after it pings.

The drain runs in time slices so that a flood of messages never blocks the
GUI for long: after ``time_slice`` seconds it pings itself and returns to the
event loop, which handles user input before the next slice.

What observers do is the application's business, and delivery survives it:

* A task is forgotten (by the inbox and, through ``on_finished``, by the
  executor) before its final message reaches its future, so an observer of
  ``done`` may shut the executor down, which releases this inbox.
* An exception an observer raises (re-raised by Traits' exception handler
  when the application asks it to, or a ``SystemExit``) goes to whoever
  runs the loop, once its message is consumed; the inbox pings itself for
  the rest.
* An observer may run a nested event loop (a modal dialog) that delivers
  meanwhile: a delivery inside a delivery (:meth:`Inbox._deliver_nested`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from offload._event_loops.interface import IEventLoop
from offload._routing.interface import IMessageRouter, OnFinished, Receiver
from offload._routing.protocol import FINAL_KINDS

logger = logging.getLogger("offload.routing")

#: Default longest time (s) the main thread spends delivering per wake-up.
#: Measured on Qt under a 100,000-message flood (benchmarks/gui_stall.py):
#: a 10 ms timer's longest gap was ~48 ms with 20 ms slices (a slice, the
#: GIL waits inside it, and often a second slice before the timer's turn),
#: ~30 ms with 10 ms slices, at the same throughput.
DEFAULT_TIME_SLICE = 0.01

#: How many messages are delivered between two looks at the clock.
_CHECK_EVERY = 64

#: Most deliveries running at once, one inside another (observers running
#: nested event loops).  Each is a dozen Python frames or more, so this
#: keeps far from the recursion limit; past it, a delivery waits for one
#: to return.
_MAX_DEPTH = 16


class Inbox(IMessageRouter):
    """Main-thread half of a router; subclasses provide :attr:`sender`."""

    def __init__(self, event_loop: IEventLoop, time_slice: float = DEFAULT_TIME_SLICE):
        self._items: deque = deque()
        self._armed = True
        self._receivers: dict[int, Receiver] = {}
        self._time_slice = time_slice
        self._pingee = event_loop.pingee(self._deliver)
        #: The thread that makes the inbox: the main thread, that delivers.
        self._thread_id = threading.get_ident()
        # Set for deliver_blocking only, and only while it waits: a
        # threading.Event is pure Python and cost producers ~2 µs per wake.
        self._arrived = threading.Event()
        self._blocking = False
        self._on_finished: OnFinished | None = None
        self._connected = False
        #: A producer that waits for the backlog to shrink (see
        #: :meth:`wait_for_backlog`) sets the flag and waits on the event.
        self._producer_waiting = False
        self._backlog_low = threading.Event()
        self._backlog_target = 0
        #: Deliveries so far, and the count when a producer's wait last
        #: timed out: it waits again only once the main thread delivers.
        self._deliveries = 0
        self._wait_timed_out_at = -1
        #: Deliveries running now, one inside another (main thread only).
        self._depth = 0
        #: The task whose message is being delivered (main thread only).
        self._current: int | None = None
        #: The tasks whose observers run further down the stack than the
        #: innermost delivery: their next messages wait (main thread only).
        self._busy: list[int | None] = []
        #: A delivery was refused at _MAX_DEPTH: ping when one returns.
        self._owed = False
        #: See :meth:`release_when_idle`.
        self._when_idle: Callable[[], None] | None = None
        #: Called on the main thread at the end of every delivery (a batch
        #: of messages), nested ones included: what the executor publishes
        #: its ``futures`` and ``counts`` with, once per batch.
        self.on_batch: Callable[[], None] | None = None

    # Producer side (any thread) ---------------------------------------------

    def put(self, item: tuple) -> None:
        """Queue one ``(task_id, message)``.  Any thread."""
        self._items.append(item)
        if self._armed:
            self._armed = False
            self._wake()

    def put_many(self, items: Iterable[tuple]) -> None:
        """Queue several items at once, in order.  Any thread."""
        self._items.extend(items)
        if self._armed:
            self._armed = False
            self._wake()

    def inject(self, task_id: int, message: tuple) -> None:
        self.put((task_id, message))

    def request_batch(self) -> None:
        """Make the main thread deliver soon, if only an empty batch, so
        that :attr:`on_batch` runs.  Any thread; through the inbox's own
        wake-up, so none is added if one is on its way."""
        # An item for no task: delivered to nobody.
        self.put((None, None))

    def wait_for_backlog(self, limit: int, timeout: float) -> None:
        """If more than ``limit`` items wait, wait up to ``timeout`` s for
        the main thread to bring them down to half that.  One producer
        thread only (a process pool's reader); never the main thread.

        Soft backpressure: the wait is bounded, and after a wait that timed
        out the producer waits again only once the main thread has started
        another delivery, so a main thread that does not deliver (busy
        submitting, or its loop not running) costs the producer one
        ``timeout``, not one per chunk.
        """
        if len(self._items) <= limit or self._wait_timed_out_at == self._deliveries:
            return
        low = self._backlog_low
        low.clear()
        self._backlog_target = limit // 2
        self._producer_waiting = True
        try:
            # After announcing the wait: a delivery that ended before it
            # saw no waiter, so look again.
            if len(self._items) > limit and not low.wait(timeout):
                self._wait_timed_out_at = self._deliveries
        finally:
            self._producer_waiting = False

    def _wake(self) -> None:
        if self._blocking:
            self._arrived.set()
        self._pingee.ping()

    # Main-thread side -------------------------------------------------------

    def connect(self, on_finished: OnFinished) -> None:
        self._on_finished = on_finished
        self._pingee.connect()
        self._connected = True

    def disconnect(self) -> None:
        self._pingee.disconnect()
        self._connected = False

    def add_receiver(self, task_id: int, receiver: Receiver) -> None:
        # Any thread (an executor takes submissions from any thread).  The
        # main thread may replace the table meanwhile (see _deliver): then
        # it goes in the new one as well.
        receivers = self._receivers
        receivers[task_id] = receiver
        if receivers is not self._receivers:
            self._receivers[task_id] = receiver

    def discard_receiver(self, task_id: int) -> None:
        receivers = self._receivers
        receivers.pop(task_id, None)
        if receivers is not self._receivers:
            self._receivers.pop(task_id, None)

    @property
    def outstanding(self) -> int:
        return len(self._receivers)

    def _deliver(self, time_slice: float | None = None, blocking: bool = False) -> None:
        """Deliver what waits, for up to ``time_slice`` seconds (by default
        the inbox's own); the pingee's ``on_ping``.  One function, not
        three: it runs first thing after the main thread wakes, when every
        call costs cache misses.

        A delivery started while another is in progress (an observer runs a
        nested event loop, or calls ``shutdown``) is :meth:`_deliver_nested`.
        """
        if self._depth:
            self._deliver_nested(time_slice, blocking)
            return
        # Disarmed while delivering: producers only append, and this loop
        # sees what they append.  Had they pinged, each slice would end
        # with a wake already posted, and a toolkit that handles posted
        # events before timers (Qt) would run slice after slice with no
        # turn for a repaint timer in between: 30-50 ms stalls.
        self._armed = False
        self._deliveries += 1
        self._depth = 1
        items = self._items
        popleft = items.popleft
        receivers = self._receivers
        on_finished = self._on_finished
        final_kinds = FINAL_KINDS
        if time_slice is None:
            time_slice = self._time_slice
        deadline = time.perf_counter() + time_slice
        count = 0
        try:
            while True:
                while items:
                    task_id, message = popleft()
                    receiver = receivers.get(task_id)
                    if receiver is None:
                        # Already finished (e.g. a failure injected after the end).
                        continue
                    # Which task a nested delivery must hold back.
                    self._current = task_id
                    if message[0] in final_kinds:
                        # Forgotten before its observers run: one that shuts
                        # the executor down, or raises SystemExit, finds the
                        # task gone.
                        del receivers[task_id]
                        after = on_finished(task_id)  # type: ignore[misc]
                        if after is None:
                            receiver(message)
                        else:
                            try:
                                receiver(message)
                            finally:
                                after()
                    else:
                        receiver(message)
                    count += 1
                    if count % _CHECK_EVERY:
                        continue
                    if self._producer_waiting and len(items) <= self._backlog_target:
                        self._backlog_low.set()
                    if time.perf_counter() > deadline:
                        # Yield to the event loop and come back for the
                        # rest.  From the main thread, the ping is a
                        # zero-delay timer (or call_soon): due timers and
                        # input go first.
                        self._pingee.ping()
                        break
                else:
                    # Drained.  Arm, then look again: an item appended
                    # between the last pop and the arming pinged nobody,
                    # so deliver it now.
                    self._armed = True
                    if items:
                        self._armed = False
                        continue
                    if self._producer_waiting:
                        self._backlog_low.set()
                break
        except BaseException:
            # An observer raised (Traits' handler re-raises when told to, and
            # SystemExit or KeyboardInterrupt always go through): the message
            # is consumed, the exception goes to whoever runs the loop, and
            # the rest must still come.
            self._pingee.ping()
            raise
        finally:
            self._depth = 0
            if self._when_idle is not None and not self._receivers:
                self._call_when_idle()
            if self.on_batch is not None:
                self.on_batch()
        if not receivers and receivers is self._receivers:
            # A dict never shrinks: after a burst of 20,000 futures its
            # table (576 KiB) would stay for good.  A fresh one is free.
            self._receivers = {}
            if receivers:
                # Another thread's add_receiver went into the old one after
                # the look above (it also puts it in the new one if it sees
                # the swap; this catches the case where it did not).
                self._receivers.update(receivers)

    def _deliver_nested(self, time_slice: float | None, blocking: bool) -> None:
        """A delivery inside a delivery (main thread).

        An observer that runs a nested event loop (a modal dialog, a
        ``QEventLoop.exec()``) must see other futures change meanwhile, and
        one that calls ``shutdown`` needs every task's end.  So this delivers
        whatever waits, except the messages of the tasks whose observers are
        running further down the stack: those wait, in order, until those
        observers return, so that each task's messages are delivered one
        after the other.  ``shutdown`` (``blocking``) delivers them too: it
        must see every task end.

        Nesting is bounded: a task's messages never nest inside its own, and
        past ``_MAX_DEPTH`` deliveries are owed until one returns (except
        ``shutdown``'s, which would otherwise wait for ever).
        """
        if self._depth >= _MAX_DEPTH and not blocking:
            self._owed = True
            return
        outer = self._current
        busy = self._busy
        busy.append(outer)
        self._depth += 1
        self._armed = False
        self._deliveries += 1
        items = self._items
        receivers = self._receivers
        on_finished = self._on_finished
        held: list[tuple] = []
        if time_slice is None:
            time_slice = self._time_slice
        deadline = time.perf_counter() + time_slice
        count = 0
        try:
            while True:
                while items:
                    task_id, message = items.popleft()
                    receiver = receivers.get(task_id)
                    if receiver is None:
                        continue
                    if task_id in busy and not blocking:
                        held.append((task_id, message))
                        continue
                    self._current = task_id
                    if message[0] in FINAL_KINDS:
                        del receivers[task_id]
                        after = on_finished(task_id)  # type: ignore[misc]
                        try:
                            receiver(message)
                        finally:
                            if after is not None:
                                after()
                    else:
                        receiver(message)
                    count += 1
                    if not count % _CHECK_EVERY and time.perf_counter() > deadline:
                        self._pingee.ping()
                        break
                else:
                    self._armed = True
                    if items:
                        self._armed = False
                        continue
                break
        except BaseException:
            self._pingee.ping()
            raise
        finally:
            # Back at the front, in order: the first ones delivered once
            # their task's observer has returned.
            items.extendleft(reversed(held))
            busy.pop()
            self._current = outer
            self._depth -= 1
            if self._owed:
                self._owed = False
                self._pingee.ping()
            if self.on_batch is not None:
                self.on_batch()

    def release_when_idle(self, release: Callable[[], None]) -> None:
        """Call ``release()`` on the main thread once no task is outstanding.

        Any thread: the garbage collector may drop an executor anywhere.
        Called now if that is the main thread, no delivery is running and
        no task is outstanding; otherwise at the end of the delivery that
        leaves no task outstanding (the main thread is woken to look).
        """
        self._when_idle = release
        if (
            threading.get_ident() == self._thread_id
            and not self._depth
            and not self._receivers
        ):
            self._call_when_idle()
        else:
            # No task id: delivered to nobody, it only makes the main thread
            # deliver, and look.
            self.put((None, None))

    def _call_when_idle(self) -> None:
        release, self._when_idle = self._when_idle, None
        if release is not None:
            release()

    def deliver_blocking(self, timeout: float) -> None:
        # Order matters: announce the wait, then re-arm (a ping may be
        # pending in an event loop that is not running, and producers only
        # wake an armed inbox), then look.  A producer appends before it
        # reads ``_armed`` and ``_blocking``, so either this look sees its
        # item or the producer sets ``_arrived``.
        self._arrived.clear()
        self._blocking = True
        self._armed = True
        try:
            if not self._items:
                self._arrived.wait(timeout)
        finally:
            self._blocking = False
        self._deliver(float("inf"), blocking=True)
