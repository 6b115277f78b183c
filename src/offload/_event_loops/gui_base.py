"""What the Qt and wx loops share: a pingee over a waker, and a test helper.

Imports no toolkit.  Each toolkit module brings its waker (a main-thread
object whose ``wake()``, callable from any thread, calls back once on the
main thread) and subclasses :class:`WakerPingee` and :class:`GuiLoopHelper`.
"""

from __future__ import annotations

import abc
from collections import deque
from collections.abc import Callable
from typing import Any, NoReturn, Protocol

from offload._event_loops.interface import IEventLoopHelper, IPingee


class _Waker(Protocol):
    def wake(self) -> None: ...


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
            self._on_ping()


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
        if self._app is not None:
            # Handle what this test left queued now, not in the next test.
            self._flush()
        self._calls.clear()
        self._app = None

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
