"""Event loop backed by an :mod:`asyncio` loop."""

from __future__ import annotations

import asyncio
import socket
import threading
import weakref
from collections.abc import Callable
from typing import Any

from offload._event_loops.interface import IEventLoop, IEventLoopHelper, IPingee

#: While ``run_until`` waits, how often (s) the condition is re-checked in
#: case it reads state other than the watched trait.
_RECHECK = 0.05

#: The key, in the context a delivery's error is handed to the loop's
#: exception handler with, that tells it from other callbacks' errors
#: (``run_until`` raises these).
DELIVERY_ERROR = "offload_delivery_error"

#: That context's message.
_DELIVERY_ERROR_MESSAGE = (
    "an exception was raised while offload delivered messages to futures (by "
    "an observer, re-raised by Traits' exception handler, or by a future's "
    "_process_<kind> method); the other messages are still delivered"
)


class AsyncioEventLoop(IEventLoop):
    """Deliver offload's messages on an asyncio event loop.

    Parameters
    ----------
    event_loop : asyncio.AbstractEventLoop, optional
        The loop to use; it stays the caller's.  If not given, a new loop is
        made, owned by this object (see :meth:`close`), and made the current
        loop of the calling thread, so that code written for Traits Futures
        0.3 (which calls ``asyncio.get_event_loop()`` afterwards) finds it.

    Notes
    -----
    Messages are delivered by callbacks that run inside the asyncio loop's
    thread, that is, the thread that runs ``run_forever`` /
    ``run_until_complete``, which should be the thread that made the
    executor.
    """

    def __init__(self, event_loop: asyncio.AbstractEventLoop | None = None) -> None:
        if event_loop is None:
            event_loop = asyncio.new_event_loop()
            asyncio.set_event_loop(event_loop)
            self._owns_loop = True
        elif not isinstance(event_loop, asyncio.AbstractEventLoop):
            raise TypeError(
                "AsyncioEventLoop(event_loop=...) needs an asyncio event loop, "
                f"got {event_loop!r}; pass asyncio.new_event_loop() or nothing"
            )
        else:
            self._owns_loop = False
        self._loop = event_loop

    @property
    def event_loop(self) -> asyncio.AbstractEventLoop:
        """The wrapped asyncio loop."""
        return self._loop

    def _check_await_in(self, running: asyncio.AbstractEventLoop) -> None:
        """Raise RuntimeError unless ``running`` is the wrapped loop.

        Called by ``await future`` (see ``offload._futures.base``): awaited
        in another asyncio loop, a future of this loop's executor would
        never wake its awaiter.  The commonest way there is
        ``AsyncioEventLoop()`` inside ``asyncio.run()``, which makes a loop
        of its own.
        """
        if running is not self._loop:
            raise RuntimeError(
                "this future cannot be awaited in this asyncio loop: its "
                "messages are delivered by another one, the loop of its "
                "executor's AsyncioEventLoop (AsyncioEventLoop() with no "
                "argument makes a new loop); await it in that loop, or make "
                "the executor with "
                "AsyncioEventLoop(event_loop=asyncio.get_running_loop())"
            )

    def close(self) -> None:
        """Close the asyncio loop if this object made it; otherwise do nothing.

        Call it on the main thread once no executor uses this loop.
        """
        if self._owns_loop and not self._loop.is_closed():
            self._loop.close()
            try:
                current = asyncio.get_event_loop_policy().get_event_loop()
            except RuntimeError:
                current = None
            if current is self._loop:
                asyncio.set_event_loop(None)

    def pingee(self, on_ping: Callable[[], None]) -> IPingee:
        return _AsyncioPingee(self._loop, on_ping)

    def event_loop_helper(self) -> IEventLoopHelper:
        return _AsyncioEventLoopHelper(self._loop)


class _AsyncioPingee(IPingee):
    """Wakes the loop through a socket pair of its own, watched by ``add_reader``.

    ``loop.call_soon_threadsafe`` also wakes it, and is what a loop without
    ``add_reader`` (Windows' proactor loop) gets; but it makes a handle per
    ping and writes to the loop's own wake-up socket, which the loop then
    reads until empty, two reads per wake.  Measured in one process against
    it, this pingee took 5-9% off the round trip of ``await future`` (8-14%
    with the other core busy), and left an observer's unchanged
    (benchmarks/README.md).  It reads its byte after the delivery, as the
    loop reads its own after running the handle.

    Pings are counted, and a byte is written only when the count leaves
    zero: the socket never holds more than a byte or two, however long the
    loop does not run, and each ping makes exactly one ``on_ping`` call.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, on_ping: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._on_ping = on_ping
        self._connected = False
        # Guards the count and the sockets: a worker's ping must never
        # write to a socket that disconnect() closed (by then its
        # descriptor's number may be another file's).
        self._lock = threading.Lock()
        self._pending = 0
        #: (reader, writer) while connected through them; None otherwise.
        self._sockets: tuple[socket.socket, socket.socket] | None = None
        self._close_sockets: Callable[[], None] | None = None

    def connect(self) -> None:
        if self._connected:
            return
        self._sockets = self._watched_socket_pair()
        self._connected = True

    def _watched_socket_pair(self) -> tuple[socket.socket, socket.socket] | None:
        """A socket pair the loop watches, or None: use call_soon_threadsafe."""
        try:
            reader, writer = socket.socketpair()
        except OSError:
            return None
        reader.setblocking(False)
        writer.setblocking(False)
        try:
            self._loop.add_reader(reader.fileno(), self._readable)
        except (NotImplementedError, RuntimeError):
            # A proactor loop, or a closed one: call_soon_threadsafe says so.
            reader.close()
            writer.close()
            return None
        # The loop holds this pingee while it watches the reader.  If the
        # loop is closed and dropped without a disconnect, the sockets are
        # closed when the pingee goes.
        self._close_sockets = weakref.finalize(self, _close, reader, writer)
        return reader, writer

    def disconnect(self) -> None:
        with self._lock:
            self._connected = False
            self._pending = 0
            sockets, self._sockets = self._sockets, None
        if sockets is None:
            return
        # No ping touches the sockets any more.  Unwatched before closed, so
        # that the loop never watches a number that a new file may reuse.
        self._loop.remove_reader(sockets[0].fileno())
        if self._close_sockets is not None:
            self._close_sockets()
            self._close_sockets = None

    def ping(self) -> None:
        with self._lock:
            if not self._connected:
                return
            sockets = self._sockets
            if sockets is not None:
                self._pending += 1
                if self._pending == 1:
                    try:
                        sockets[1].send(b"\0")
                    except OSError:  # pragma: no cover - a byte is there already
                        pass
                return
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:
            # The loop was closed under us (application exit): nothing to wake.
            pass

    def _readable(self) -> None:
        with self._lock:
            count, self._pending = self._pending, 0
        try:
            while count and self._connected:
                count -= 1
                try:
                    self._on_ping()
                except Exception as error:
                    # As the loop handles any callback's error (logged, by
                    # default); KeyboardInterrupt and SystemExit stop it.
                    # The other pings wait for the next turn, so that a
                    # test's run_until, stopped by this one, raises it
                    # before the next delivery can fail.
                    self._report(error)
                    break
        finally:
            self._drain(count)

    def _report(self, error: Exception) -> None:
        self._loop.call_exception_handler(
            {"message": _DELIVERY_ERROR_MESSAGE, "exception": error, DELIVERY_ERROR: True}
        )

    def _drain(self, undelivered: int) -> None:
        """Read the wake-up byte, after the delivery: a ping's latency does
        not include that read.  Pings counted since the count was taken may
        have had their byte read here: write one for them."""
        with self._lock:
            sockets = self._sockets
            if sockets is None or not self._connected:
                return
            try:
                sockets[0].recv(64)
            except OSError:  # nothing there: a spurious wake-up
                pass
            self._pending += undelivered
            if self._pending:
                try:
                    sockets[1].send(b"\0")
                except OSError:  # pragma: no cover - a byte is there already
                    pass

    def _deliver(self) -> None:
        if self._connected:
            try:
                self._on_ping()
            except Exception as error:
                self._report(error)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        sock.close()


class _AsyncioEventLoopHelper(IEventLoopHelper):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def init(self) -> None:
        pass

    def dispose(self) -> None:
        pass

    def setattr_soon(self, obj: Any, name: str, value: Any) -> None:
        self._loop.call_soon_threadsafe(setattr, obj, name, value)

    def run_until(
        self,
        object: Any,
        trait: str,
        condition: Callable[[Any], bool],
        timeout: float,
    ) -> None:
        if condition(object):
            return
        loop = self._loop
        outcome: list[bool] = []
        errors: list[BaseException] = []

        def finish(reached: bool) -> None:
            # Stops the loop at the end of this turn: nothing else is
            # delivered after the condition holds or an observer fails.
            if not outcome:
                outcome.append(reached)
                loop.stop()

        def check(event: Any = None) -> None:
            if not outcome and condition(object):
                finish(True)

        def recheck() -> None:
            # The condition may depend on more than the trait: check it again
            # now and then too, cheaply.
            check()
            if not outcome:
                rechecks[0] = loop.call_later(_RECHECK, recheck)

        previous = loop.get_exception_handler()

        def on_error(loop: asyncio.AbstractEventLoop, context: dict) -> None:
            # An exception raised while futures were updated (an observer's,
            # re-raised by Traits when told to) ends the run: it is raised
            # here, in the test.  Other callbacks' errors go where they went.
            if context.get(DELIVERY_ERROR) and not errors:
                errors.append(context["exception"])
                finish(False)
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        object.observe(check, trait)
        timer = loop.call_later(timeout, finish, False)
        rechecks = [loop.call_later(_RECHECK, recheck)]
        loop.set_exception_handler(on_error)
        try:
            # ``finish`` runs only inside the loop, so it cannot stop it
            # before it starts.
            while not outcome:
                loop.run_forever()
        finally:
            loop.set_exception_handler(previous)
            timer.cancel()
            rechecks[0].cancel()
            object.observe(check, trait, remove=True)
        if errors:
            raise errors[0]
        if not outcome[0]:
            raise RuntimeError(
                f"run_until timed out after {timeout} seconds: the condition "
                f"on {object!r} (watching trait {trait!r}) never became true"
            )
