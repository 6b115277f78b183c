"""The small interfaces the executor needs from a main-thread event loop."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any


class IPingee(abc.ABC):
    """Runs a callback on the main thread when pinged from any thread.

    Made by :meth:`IEventLoop.pingee`.  Between :meth:`connect` and
    :meth:`disconnect` (both called on the main thread), each :meth:`ping`
    (callable from any thread) makes the event loop call ``on_ping()`` once,
    soon, on the main thread.  Pings may be coalesced by the caller, never by
    the pingee: offload pings once per batch of messages, not per message.

    ``on_ping()`` may raise (an observer's exception that Traits re-raises,
    ``SystemExit``): the loop handles it as it handles its callbacks' errors,
    and offload has pinged again for what is left.  It may also be called
    inside itself, from a nested loop that an observer runs.
    """

    @abc.abstractmethod
    def connect(self) -> None:
        """Start accepting pings.  Main thread only."""

    @abc.abstractmethod
    def disconnect(self) -> None:
        """Stop: later pings, and pings not yet delivered, do nothing.

        Main thread only.  After this, ``ping()`` must be harmless even if the
        underlying loop has been closed or destroyed.
        """

    @abc.abstractmethod
    def ping(self) -> None:
        """Ask for ``on_ping()`` to run soon on the main thread.

        Thread-safe, non-blocking, and never raises.
        """


class IEventLoopHelper(abc.ABC):
    """Drives an event loop from tests: see :class:`offload.testing.TestAssistant`.

    All methods except :meth:`setattr_soon` must be called on the main thread,
    with the event loop not running.
    """

    @abc.abstractmethod
    def init(self) -> None:
        """Prepare the loop for use in a test (e.g. make the Qt application)."""

    @abc.abstractmethod
    def dispose(self) -> None:
        """Release what :meth:`init` made."""

    @abc.abstractmethod
    def setattr_soon(self, obj: Any, name: str, value: Any) -> None:
        """Set ``obj.<name> = value`` soon, on the main thread.  Thread-safe."""

    @abc.abstractmethod
    def run_until(
        self,
        object: Any,
        trait: str,
        condition: Callable[[Any], bool],
        timeout: float,
    ) -> None:
        """Run the loop until ``condition(object)`` is true.

        The condition is checked at the start and whenever ``trait`` of
        ``object`` changes.  Raises ``RuntimeError`` if it is still false after
        ``timeout`` seconds.  An exception raised by a pingee's ``on_ping``
        meanwhile (an observer's, re-raised by Traits' exception handler when
        told to) ends the run, and is raised here.
        """


class IEventLoop(abc.ABC):
    """A main-thread event loop that offload can deliver messages on.

    Implementations: :class:`~offload.api.AsyncioEventLoop`,
    :class:`~offload.api.QtEventLoop`, :class:`~offload.api.WxEventLoop` and
    :class:`~offload.api.ETSEventLoop`.  Third parties may add their own and
    register them under the entry-point group ``offload.event_loops``.

    Threads: a pingee's ``ping()`` may be called from any thread; the
    callback it wakes (and so every trait change of the futures) runs on
    the thread that runs the loop, the main thread.
    """

    @abc.abstractmethod
    def pingee(self, on_ping: Callable[[], None]) -> IPingee:
        """Return a pingee that calls ``on_ping`` on the main thread."""

    @abc.abstractmethod
    def event_loop_helper(self) -> IEventLoopHelper:
        """Return a helper that runs this loop from tests."""
