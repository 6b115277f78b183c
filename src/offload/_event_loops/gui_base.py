"""What the Qt and wx loops share: a pingee over a waker, and a test helper.

Imports no toolkit.  One waker for both toolkits, :class:`GuiWaker` (a
main-thread object whose ``wake()``, callable from any thread, calls back
once on the main thread), with a hook per toolkit: how to post a wake from
a worker, and a one-shot timer for the main thread's own wakes.  One test
helper, :class:`GuiLoopHelper`, whose ``run_until`` runs a nested loop of
the toolkit through hooks of the same kind.

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
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, Protocol

from offload._event_loops.interface import IEventLoopHelper, IPingee


class _Waker(Protocol):
    def wake(self) -> None: ...


#: While ``run_until`` waits, how often (ms) the condition is re-checked in
#: case it reads state other than the watched trait.  A timer, not a spin.
RECHECK_MS = 100

#: The wakers whose callback is running now, possibly suspended in a nested
#: event loop that an observer runs (main thread only).
_ACTIVE: list[GuiWaker] = []


class GuiWaker:
    """Calls ``callback()`` on the main thread once per ``wake()``.

    Made on the main thread (by the toolkit's subclass, which calls
    :meth:`_start` from its ``__init__``); ``wake()`` may be called from
    any thread.  A wake from a worker posts an event to the toolkit
    (:meth:`_post`).  A wake from the main thread itself (the inbox asking
    to come back after a time slice) starts a one-shot timer instead
    (:meth:`_start_timer`), so that the toolkit handles its timers and user
    input before the next slice rather than a chain of posted events.

    ``callback()`` may run inside itself: an observer that runs a nested
    event loop (a modal dialog) must see other futures change meanwhile.
    The inbox keeps each task's messages in order and bounds the nesting;
    the toolkit calls :func:`nudge_suspended` when its loop is about to
    wait for events, which wakes a suspended delivery once per level.
    """

    _callback: Callable[[], None]
    #: ``_callback`` calls running now, one inside another.
    _depth = 0
    #: The depth up to which a suspended call has been nudged.
    _nudged = 0

    def _start(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._main_thread = threading.get_ident()
        #: Main-thread wakes not yet delivered (main thread only).
        self._main_wakes = 0

    def wake(self) -> None:
        """Ask for one ``callback()`` on the main thread.  Any thread; never raises."""
        try:
            if self._gone():
                return
            if threading.get_ident() == self._main_thread:
                self._defer()
            else:
                self._post()
        except Exception:  # noqa: BLE001
            # The toolkit's objects or application are gone (interpreter
            # or application exit): there is nothing left to wake.
            pass

    def _defer(self) -> None:
        # Main thread: one more callback, from the timer.
        self._main_wakes += 1
        if not self._timer_running():
            self._start_timer()

    def _on_timer(self, *event: Any) -> None:
        wakes, self._main_wakes = self._main_wakes, 0
        for _ in range(wakes):
            self._run()

    # Hooks of the toolkit ---------------------------------------------------

    def _gone(self) -> bool:
        """True once the toolkit's application is gone (nothing to wake)."""
        return False

    # Not abc.abstractmethod: Qt's waker is a QObject too, whose metaclass
    # does not mix with ABCMeta.
    def _post(self) -> None:
        """Post one wake to the main thread's loop (any thread)."""
        raise NotImplementedError

    def _timer_running(self) -> bool:
        """Is the one-shot timer running (main thread)?"""
        raise NotImplementedError

    def _start_timer(self) -> None:
        """Start the one-shot timer, which calls :meth:`_on_timer` (main thread)."""
        raise NotImplementedError

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

    Nor is a waker ever deleted after its pingee: it is a toolkit object (a
    ``QObject`` with a timer, a ``wx.EvtHandler``), which must only be
    destroyed on the main thread, and the pingee goes wherever its last
    reference goes, often a worker thread, or a garbage collection that
    runs on any thread.  So the waker calls the pingee through a weak
    reference (no cycle between them), and once the pingee is gone its
    waker is kept, idle, for the next pingee made on the main thread: a
    process has as many wakers as it ever had executors at once.
    """

    def __init__(
        self, on_ping: Callable[[], None], make_waker: Callable[[Callable[[], None]], _Waker]
    ) -> None:
        self._on_ping = on_ping
        self._connected = False
        deliver = _weakly(self._deliver)
        idle = _IDLE_WAKERS.get(make_waker)
        if idle:
            waker = idle.pop()
            waker._start(deliver)  # main thread: it is ours now
        else:
            waker = make_waker(deliver)
        self._waker = waker
        weakref.finalize(self, _idle, make_waker, waker)

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


#: Wakers whose pingee is gone, by the callable that made them: kept for
#: the next pingee (see :class:`WakerPingee`).  Appended to from any
#: thread, taken from on the main thread.
_IDLE_WAKERS: dict[Any, list[Any]] = {}


def _idle(kind: Any, waker: Any) -> None:
    """The pingee of ``waker`` is gone (any thread): keep the waker, idle."""
    waker._callback = _nothing  # what a wake still queued would call
    _IDLE_WAKERS.setdefault(kind, []).append(waker)


def _nothing() -> None:
    pass


def _weakly(method: Callable[[], None]) -> Callable[[], None]:
    """``method`` (bound), called through a weak reference to its object."""
    ref = weakref.WeakMethod(method)

    def call() -> None:
        bound = ref()
        if bound is not None:
            bound()

    return call


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

    def run_until(
        self,
        object: Any,
        trait: str,
        condition: Callable[[Any], bool],
        timeout: float,
    ) -> None:
        self._check_initialised()
        if condition(object):
            return
        loop = self._new_loop()
        outcome: list[bool] = []

        def finish(value: bool) -> None:
            if not outcome:
                outcome.append(value)
                self._quit_loop(loop)

        def check(event: Any = None) -> None:
            if not outcome and condition(object):
                finish(True)

        catcher = Catcher(stop=lambda: finish(False))
        object.observe(check, trait)
        stop_deadline = self._timer(max(1, round(timeout * 1000)), lambda: finish(False), True)
        stop_recheck = self._timer(RECHECK_MS, check, False)
        try:
            # ``check`` and ``finish`` only run from inside the loop, on
            # this thread, so a quit cannot be asked for before it runs.
            with catching(catcher):
                while not outcome:
                    self._run_loop(loop)
        finally:
            object.observe(check, trait, remove=True)
            stop_deadline()
            stop_recheck()
        if catcher.error is not None:
            raise catcher.error
        if not outcome[0]:
            raise RuntimeError(
                f"run_until timed out after {timeout} seconds: the condition "
                f"on {object!r} (watching trait {trait!r}) never became true"
            )

    # Hooks of the toolkit (main thread) -----------------------------------------

    @abc.abstractmethod
    def _flush(self) -> None:
        """Deliver the events a test left queued (main thread)."""

    @abc.abstractmethod
    def _new_loop(self) -> Any:
        """A new nested event loop of the toolkit."""

    @abc.abstractmethod
    def _run_loop(self, loop: Any) -> None:
        """Run ``loop`` until :meth:`_quit_loop`."""

    @abc.abstractmethod
    def _quit_loop(self, loop: Any) -> None:
        """Make :meth:`_run_loop` of ``loop`` return (from inside it)."""

    @abc.abstractmethod
    def _timer(
        self, ms: int, callback: Callable[[], None], single_shot: bool
    ) -> Callable[[], None]:
        """Start a timer calling ``callback()`` after ``ms`` (once, or every
        ``ms``); return what stops it."""
