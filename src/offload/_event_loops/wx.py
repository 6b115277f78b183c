"""Event loop backed by the wxPython event loop.

Importing this module imports wx, so nothing in offload imports it eagerly:
``offload.api`` loads it on first use of ``WxEventLoop``.  wxPython has no
Linux wheel on PyPI; on Debian/Ubuntu install ``python3-wxgtk4.0`` and use a
virtual environment made with ``--system-site-packages``.

How a worker thread wakes the main thread: it posts a ``wx.PyEvent`` of a
private type to a ``wx.EvtHandler`` made on the main thread.
``wx.PostEvent`` is thread-safe (``wx.CallAfter`` is built on it); the
handler runs on the main thread when the wx loop next handles pending
events.  A worker never touches a window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from offload._event_loops.gui_base import (
    GuiLoopHelper,
    GuiWaker,
    WakerPingee,
    nudge_suspended,
)
from offload._event_loops.interface import IEventLoop, IEventLoopHelper, IPingee

#: What to install when wx is missing (also shown by ETSEventLoop).
INSTALL_HINT = (
    "install wxPython: it has no Linux wheel on PyPI, so on Debian/Ubuntu "
    "apt-get install python3-wxgtk4.0 and use a venv made with "
    "--system-site-packages (elsewhere pip install wxPython), then "
    "pip install 'offload[wx]'"
)

try:
    import wx
except ImportError as _error:
    # A missing module stays a ModuleNotFoundError (pytest.importorskip).
    raise (ModuleNotFoundError if isinstance(_error, ModuleNotFoundError) else ImportError)(
        f"offload's WxEventLoop needs wxPython ({_error}); {INSTALL_HINT}"
    ) from _error

#: Our private event type and its binder.
_WAKE_EVENT = wx.NewEventType()
_EVT_WAKE = wx.PyEventBinder(_WAKE_EVENT)

#: A wake handled less than this (s) after the previous delivery ended is
#: taken as part of a flood and deferred through a timer (see ``_Waker``).
_CHAIN_GAP = 0.001

#: The wx.App made by offload when the process had none (kept alive here).
_KEEP_ALIVE: list[Any] = []


def _application() -> Any:
    """Return the process's ``wx.App``, making one if there is none.

    Main thread only.  Pyface does the same when its wx toolkit loads, and
    reuses an application that exists; so does TraitsUI.  wx drops events
    posted while no application exists, which is why the application must
    exist before the first ping.
    """
    app = wx.GetApp()
    if app is None:
        app = wx.App(False)
        _KEEP_ALIVE.append(app)
    return app


#: The ``wx.App`` whose idle events nudge suspended wakers.
_WATCHED_APP: list[Any] = []


def _on_idle(event: Any) -> None:
    # Main thread: the loop that runs (maybe an observer's modal dialog)
    # has nothing left to do.
    event.Skip()
    nudge_suspended()


def _watch_idle_events() -> None:
    """Have the application's idle events call ``nudge_suspended`` (main
    thread).  wx sends one whenever a loop, a nested one included, runs out
    of events; ``Yield`` sends one too, which nudges at most once per level
    of nesting (see ``offload._event_loops.gui_base``)."""
    app = wx.GetApp()
    if app is None or app in _WATCHED_APP:
        return
    app.Bind(wx.EVT_IDLE, _on_idle)
    _WATCHED_APP[:] = [app]


class _Waker(GuiWaker):
    """offload's waker on wx (see :class:`GuiWaker`): a main-thread
    ``wx.EvtHandler``.

    A worker's wake posts a ``wx.PyEvent`` of our private type to it; the
    main thread's own wakes go through a one-shot ``wx.Timer``, and so does
    a posted wake handled straight after the previous delivery: wx handles
    the events posted while it handles pending events in the same pass, so
    a chain of posted events would starve timers, repaints and input for as
    long as a flood lasts.  The application's idle events nudge a suspended
    delivery.
    """

    def __init__(self, callback: Callable[[], None]) -> None:
        self._start(callback)
        self._handler = wx.EvtHandler()
        self._handler.Bind(_EVT_WAKE, self._on_wake)
        #: When the last ``callback()`` returned (main thread only).
        self._last_end = float("-inf")
        self._timer = wx.Timer(self._handler)
        _watch_idle_events()
        self._handler.Bind(wx.EVT_TIMER, self._on_timer, self._timer)

    def _on_wake(self, event: Any) -> None:
        # Main thread, inside the wx loop: a wake right after a delivery
        # ended is part of a flood, so it goes through the timer.
        if time.perf_counter() - self._last_end < _CHAIN_GAP:
            self._defer()
        else:
            self._run()

    def _run(self) -> None:
        try:
            GuiWaker._run(self)
        finally:
            self._last_end = time.perf_counter()

    def _gone(self) -> bool:
        # wx drops what is posted with no application (exit).
        return wx.GetApp() is None

    def _post(self) -> None:
        event = wx.PyEvent()
        event.SetEventType(_WAKE_EVENT)
        wx.PostEvent(self._handler, event)

    def _timer_running(self) -> bool:
        return self._timer.IsRunning()

    def _start_timer(self) -> None:
        self._timer.StartOnce(1)


class WxEventLoop(IEventLoop):
    """Deliver offload's messages on the wx event loop of the main thread.

    Make it, and the executor that uses it, on the main thread.  The first
    pingee made (that is, the first executor) makes the ``wx.App`` if the
    process has none yet, as Pyface would; an existing one is reused.
    """

    def pingee(self, on_ping: Callable[[], None]) -> IPingee:
        return _WxPingee(on_ping)

    def event_loop_helper(self) -> IEventLoopHelper:
        return _WxEventLoopHelper()


class _WxPingee(WakerPingee):
    """Calls ``on_ping`` on the main thread when pinged from any thread.

    Makes the ``wx.App`` first if the process has none (see
    :class:`WakerPingee` for the rest).
    """

    def __init__(self, on_ping: Callable[[], None]) -> None:
        _application()
        super().__init__(on_ping, _Waker)


class _WxEventLoopHelper(GuiLoopHelper):
    """Runs the wx loop from tests (see :class:`offload.testing.TestAssistant`).

    ``init`` reuses the process's ``wx.App`` or makes one that is kept for
    the process; ``run_until`` runs a nested ``wx.GUIEventLoop``.
    """

    toolkit = "wx"

    def __init__(self) -> None:
        super().__init__(_application, _Waker)

    def _flush(self) -> None:
        self._app.ProcessPendingEvents()

    def _new_loop(self) -> Any:
        return wx.GUIEventLoop()

    def _run_loop(self, loop: Any) -> None:
        loop.Run()

    def _quit_loop(self, loop: Any) -> None:
        if loop.IsRunning():
            loop.Exit()

    def _timer(
        self, ms: int, callback: Callable[[], None], single_shot: bool
    ) -> Callable[[], None]:
        if single_shot:
            return wx.CallLater(ms, callback).Stop
        timer = wx.Timer()
        timer.Bind(wx.EVT_TIMER, lambda event: callback())
        timer.Start(ms)
        return timer.Stop
