"""TestAssistant: drive an event loop from unittest tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from traits.api import Bool, HasStrictTraits

from offload._event_loops.asyncio_loop import AsyncioEventLoop
from offload._event_loops.interface import IEventLoop, IEventLoopHelper

#: Seconds ``run_until`` waits by default before it raises.
DEFAULT_TIMEOUT = 10.0


class _Sentinel(HasStrictTraits):
    reached = Bool(False)


class TestAssistant:
    """Mixin for ``unittest.TestCase``: runs an event loop until a condition.

    ``setUp`` makes the event loop (``self._event_loop``, from
    :meth:`event_loop_factory`); ``tearDown`` releases it.  Shut down your
    executors in your own ``tearDown`` *before* calling this one's.

    Everything runs on the test's (main) thread.
    """

    #: The event loop of the running test.
    _event_loop: IEventLoop
    _event_loop_helper: IEventLoopHelper

    def setUp(self) -> None:
        """Make the test's event loop (``self._event_loop``) and prepare it.

        A subclass that overrides ``setUp`` calls this first.
        """
        self._event_loop = self.event_loop_factory()
        self._event_loop_helper = self._event_loop.event_loop_helper()
        self._event_loop_helper.init()

    def tearDown(self) -> None:
        """Release the test's event loop (closing it, if it can be closed).

        Shut down the test's executors before calling this.
        """
        self._event_loop_helper.dispose()
        close = getattr(self._event_loop, "close", None)
        if close is not None:
            close()
        del self._event_loop_helper
        del self._event_loop

    def event_loop_factory(self) -> IEventLoop:
        """Make the event loop for a test.  Default: a fresh asyncio loop.

        Override it to test on another loop (e.g. return ``QtEventLoop()``).
        """
        return AsyncioEventLoop()

    def run_until(
        self,
        object: Any,
        trait: str,
        condition: Callable[[Any], bool],
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Run the event loop until ``condition(object)`` holds.

        The loop runs on the calling thread (the test's), so the futures'
        notifications and the condition run there too.  The condition is
        checked first, then each time ``trait`` of ``object`` changes.

        Raises
        ------
        RuntimeError
            If the condition is still false after ``timeout`` seconds.
        Exception
            The first exception raised while futures were updated, which
            ends the run: an observer's, when Traits re-raises them
            (``push_exception_handler(reraise_exceptions=True)``), or
            ``SystemExit`` / ``KeyboardInterrupt``.  The messages not yet
            delivered come at the next run.
        """
        self._event_loop_helper.run_until(object, trait, condition, timeout)

    def exercise_event_loop(self) -> None:
        """Run the event loop briefly, handling what is already queued.

        Runs on the calling thread, like :meth:`run_until`, and raises what
        it raises.
        """
        sentinel = _Sentinel()
        self._event_loop_helper.setattr_soon(sentinel, "reached", True)
        self.run_until(sentinel, "reached", lambda s: s.reached)
