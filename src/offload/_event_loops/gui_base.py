"""What the Qt and wx loops share: a pingee over a waker, and a test helper.

Imports no toolkit.  Each toolkit module brings its waker (a main-thread
object whose ``wake()``, callable from any thread, calls back once on the
main thread), built on :class:`ReentrantRun`, and subclasses
:class:`WakerPingee` and :class:`GuiLoopHelper`.

Observers may run nested event loops (a modal dialog on ``done``), and the
futures must keep changing meanwhile.  A waker's callback may therefore run
inside itself (the inbox keeps each task's messages in order, see
``offload._routing.inbox``); and since the inbox posts nothing while a
delivery runs, a nested loop that goes idle while a delivery is suspended
below it nudges that delivery's waker once (:func:`nudge_suspended`), which
lets the inbox deliver what waits and be woken again.
"""

from __future__ import annotations

import abc
import contextlib
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, Protocol

from offload._event_loops.interface import IEventLoopHelper, IPingee


class _Waker(Protocol):
    def wake(self) -> None: ...


#: The wakers whose callback is running now, possibly suspended in a nested
#: event loop that an observer runs (main thread only).
_ACTIVE: list[ReentrantRun] = []


class ReentrantRun:
    """How a toolkit waker runs its callback: re-entrantly, with nudges.

    The toolkit's waker sets ``_callback``, calls :meth:`_run` when woken,
    implements :meth:`_post` (wake it again from the main thread, through
    the toolkit's queue of events), and has the toolkit call
    :func:`nudge_suspended` when its loop is about to wait for events.
    Main thread only.
    """

    _callback: Callable[[], None]
    #: ``_callback`` calls running now, one inside another.
    _depth = 0
    #: The depth up to which a suspended call has been nudged.
    _nudged = 0

    def _run(self) -> None:
        depth = self._depth
        if not depth:
            _ACTIVE.append(self)
        self._depth = depth + 1
        try:
            self._callback()
        finally:
            self._depth = depth
            if self._nudged > depth:
                self._nudged = depth
            if not depth:
                _ACTIVE.remove(self)

    def _nudge(self) -> None:
        """The loop is idle while ``_callback`` runs below it: wake once."""
        if self._nudged < self._depth:
            self._nudged = self._depth
            self._post()

    def _post(self) -> None:
        """Ask for one more ``_run`` soon, from the main thread."""
        raise NotImplementedError


def nudge_suspended() -> None:
    """Main thread, when the toolkit's loop is about to wait for events.

    If a waker's callback is running, the loop that waits is nested in it
    (an observer's modal dialog): nudge it, once per such level, so that
    what waited for the suspended delivery is delivered now.  A plain
    ``processEvents`` does not wait, and gets no nudge.
    """
    for waker in tuple(_ACTIVE):
        waker._nudge()


class Catcher:
    """Where a test helper's ``run_until`` takes the first exception raised
    in a delivery while it runs (see :func:`catching`)."""

    def __init__(self, stop: Callable[[], None]) -> None:
        #: Called once, with the first error: ends the run.
        self._stop = stop
        self.error: BaseException | None = None

    def take(self, error: BaseException) -> bool:
        """Keep ``error`` if it is the first; False if one came before."""
        if self.error is not None:
            return False
        self.error = error
        self._stop()
        return True


#: The catchers of the test helpers' ``run_until`` calls running now,
#: innermost last (main thread only).
_CATCHERS: list[Catcher] = []


@contextlib.contextmanager
def catching(catcher: Catcher) -> Iterator[Catcher]:
    """While the block runs, the first exception raised in a delivery goes
    to ``catcher`` (and ends the run), instead of out into the toolkit,
    which prints it: a test helper's ``run_until`` raises it.  Later ones
    go to the toolkit, as they would without a test."""
    _CATCHERS.append(catcher)
    try:
        yield catcher
    finally:
        _CATCHERS.remove(catcher)


class WakerPingee(IPingee):
    """Calls ``on_ping`` on the main thread, through a waker, when pinged.

    Made on the main thread.  The waker lives as long as the pingee, not
    deleted at ``disconnect``: deleting it while a worker wakes it would
    race.  ``disconnect`` only clears a flag, which the main thread reads
    when each wake arrives, so a ping racing with a disconnect is harmless.
    """

    def __init__(
        self, on_ping: Callable[[], None], make_waker: Callable[[Callable[[], None]], _Waker]
    ) -> None:
        self._on_ping = on_ping
        self._connected = False
        self._waker = make_waker(self._deliver)

    def connect(self) -> None:
        self._connected = True

    def disconnect(self) -> None:
        self._connected = False

    def ping(self) -> None:
        if self._connected:
            self._waker.wake()

    def _deliver(self) -> None:
        if self._connected:
            try:
                self._on_ping()
            except BaseException as error:
                # Raised by an observer (Traits re-raises when told to; a
                # SystemExit always comes through).  In a test helper's
                # run_until, the test gets it; otherwise it goes to the
                # toolkit, as any slot's error (Qt and wx print it).
                if not (_CATCHERS and _CATCHERS[-1].take(error)):
                    raise


class GuiLoopHelper(IEventLoopHelper):
    """``init``, ``dispose`` and ``setattr_soon`` for a GUI toolkit's helper.

    ``setattr_soon`` queues the assignment and wakes the main thread, whose
    waker runs every queued call in order.  Subclasses pass their toolkit's
    ``application()`` and waker class, and implement ``run_until`` and
    ``_flush``.
    """

    #: The toolkit's name, for error messages.
    toolkit = "GUI"

    def __init__(
        self,
        application: Callable[[], Any],
        make_waker: Callable[[Callable[[], None]], _Waker],
    ) -> None:
        #: The process's application object, made if there is none.
        self._application = application
        self._make_waker = make_waker
        self._app: Any = None
        self._calls: deque[Callable[[], None]] = deque()
        self._waker: _Waker | None = None

    def init(self) -> None:
        self._app = self._application()
        self._waker = self._make_waker(self._run_calls)

    def dispose(self) -> None:
        catcher = Catcher(stop=lambda: None)
        if self._app is not None:
            # Handle what this test left queued now, not in the next test.
            with catching(catcher):
                self._flush()
        self._calls.clear()
        self._app = None
        if catcher.error is not None:
            raise catcher.error

    def setattr_soon(self, obj: Any, name: str, value: Any) -> None:
        waker = self._waker
        if waker is None:
            self._not_initialised()
        # deque.append and popleft are atomic: no lock needed.
        self._calls.append(lambda: setattr(obj, name, value))
        waker.wake()

    def _run_calls(self) -> None:
        # Main thread: run everything queued so far, in order.
        calls = self._calls
        while calls:
            calls.popleft()()

    def _check_initialised(self) -> None:
        if self._app is None:
            self._not_initialised()

    def _not_initialised(self) -> NoReturn:
        raise RuntimeError(f"call init() on the {self.toolkit} event loop helper first")

    @abc.abstractmethod
    def _flush(self) -> None:
        """Deliver the events a test left queued (main thread)."""
