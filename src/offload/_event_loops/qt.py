"""Event loop backed by the Qt event loop, reached through ``pyface.qt``.

``pyface.qt`` picks the binding (PySide6, PyQt5, ...; ``QT_API`` chooses).
Importing this module imports Qt, so nothing in offload imports it eagerly:
``offload.api`` loads it on first use of ``QtEventLoop``.

How a worker thread wakes the main thread: it posts a plain ``QEvent`` of a
private type to a ``QObject`` that lives on the main thread.
``QCoreApplication.postEvent`` is thread-safe, so a worker never touches a
widget, and the event is handled by that object's ``event`` method on the
main thread, on the next turn of the Qt loop.  Signals are deliberately not
used: posting an event needs no connection to make or break.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from offload._event_loops.gui_base import (
    Catcher,
    GuiLoopHelper,
    ReentrantRun,
    WakerPingee,
    catching,
    nudge_suspended,
)
from offload._event_loops.interface import IEventLoop, IEventLoopHelper, IPingee

#: What to install when Qt is missing (also shown by ETSEventLoop).
INSTALL_HINT = "install Qt with pip install 'offload[pyside6]' (or 'offload[pyqt5]')"

try:
    from pyface.qt import QtCore, QtWidgets
except (ImportError, RuntimeError) as _error:
    # pyface missing, no Qt binding, or QT_API naming one pyface does not
    # know (pyface raises RuntimeError for that).  A missing module stays a
    # ModuleNotFoundError, so that ``pytest.importorskip`` still skips.
    raise (ModuleNotFoundError if isinstance(_error, ModuleNotFoundError) else ImportError)(
        f"offload's QtEventLoop needs pyface and a Qt binding ({_error}); {INSTALL_HINT}"
    ) from _error

#: Our private event type, registered once per process.
_WAKE_EVENT = QtCore.QEvent.Type(QtCore.QEvent.registerEventType())

#: While ``run_until`` waits, how often (ms) the condition is re-checked in
#: case it reads state other than the watched trait.  A timer, not a spin.
_RECHECK_MS = 100


#: The main thread's event dispatcher once it nudges suspended wakers.
_WATCHED_DISPATCHER: list[Any] = []


def _watch_the_dispatcher() -> None:
    """Have the main thread's event dispatcher call ``nudge_suspended``
    whenever it is about to block (main thread; once it exists).

    ``aboutToBlock`` fires when a loop waits for events, a nested one
    included, and not in ``processEvents()``, which does not wait.
    """
    dispatcher = QtCore.QAbstractEventDispatcher.instance()
    if dispatcher is None or dispatcher in _WATCHED_DISPATCHER:
        return
    dispatcher.aboutToBlock.connect(nudge_suspended)
    _WATCHED_DISPATCHER[:] = [dispatcher]


class _Waker(QtCore.QObject, ReentrantRun):
    """A main-thread QObject that calls ``callback()`` once per ``wake()``.

    Made on the main thread; ``wake()`` may be called from any thread.  A
    wake from a worker posts an event.  A wake from the main thread itself
    (offload's inbox asking to come back after a time slice) starts a
    zero-delay timer instead, so that the toolkit handles timers and user
    input before the next slice rather than a chain of posted events.

    ``callback()`` may run inside itself: an observer that runs a nested
    event loop (a modal dialog) must see other futures change meanwhile.
    The inbox keeps each task's messages in order and bounds the nesting;
    the dispatcher's ``aboutToBlock`` nudges a suspended delivery (see
    ``offload._event_loops.gui_base``).
    """

    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__()
        self._callback = callback
        self._main_thread = threading.get_ident()
        #: Main-thread wakes not yet delivered (main thread only).
        self._main_wakes = 0
        self._timer = QtCore.QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timer)

    def wake(self) -> None:
        """Ask for one ``callback()`` on the main thread.  Any thread; never raises."""
        try:
            if threading.get_ident() == self._main_thread:
                self._defer()
            else:
                QtCore.QCoreApplication.postEvent(self, QtCore.QEvent(_WAKE_EVENT))
        except Exception:
            # The C++ object or the application is gone (interpreter or
            # application exit): there is nothing left to wake.
            pass

    def event(self, event: QtCore.QEvent) -> bool:
        # Main thread, inside the Qt loop.
        if event.type() == _WAKE_EVENT:
            self._run()
            return True
        return super().event(event)

    def _on_timer(self) -> None:
        wakes, self._main_wakes = self._main_wakes, 0
        for _ in range(wakes):
            self._run()

    def _defer(self) -> None:
        # Main thread: one more callback, from the timer.
        self._main_wakes += 1
        if not self._timer.isActive():
            self._timer.start(0)

    def _run(self) -> None:
        if not self._depth and not _WATCHED_DISPATCHER:
            _watch_the_dispatcher()
        ReentrantRun._run(self)

    def _post(self) -> None:
        QtCore.QCoreApplication.postEvent(self, QtCore.QEvent(_WAKE_EVENT))


class QtEventLoop(IEventLoop):
    """Deliver offload's messages on the Qt event loop of the main thread.

    Make it, and the executor that uses it, on the main thread: the thread
    that runs (or will run) the ``QApplication``.  The application may be
    made before or after; messages that arrive before the Qt loop runs wait
    for it.  Works with every binding that ``pyface.qt`` supports.
    """

    def pingee(self, on_ping: Callable[[], None]) -> IPingee:
        return _QtPingee(on_ping)

    def event_loop_helper(self) -> IEventLoopHelper:
        return _QtEventLoopHelper()


class _QtPingee(WakerPingee):
    """Calls ``on_ping`` on the main thread when pinged from any thread.

    The waker's QObject is made here, on the main thread, and kept for the
    pingee's whole life (see :class:`WakerPingee`).
    """

    def __init__(self, on_ping: Callable[[], None]) -> None:
        super().__init__(on_ping, _Waker)


class _QtEventLoopHelper(GuiLoopHelper):
    """Runs the Qt loop from tests (see :class:`offload.testing.TestAssistant`).

    ``init`` reuses the running process's ``QApplication`` or makes one.  Qt
    allows one application per process and tearing it down and making it
    again is fragile, so a made application is kept for the process and
    ``dispose`` only flushes what the test left queued.
    """

    toolkit = "Qt"

    def __init__(self) -> None:
        super().__init__(_application, _Waker)

    def _flush(self) -> None:
        # Deferred deletions and stray events of this test, now rather than
        # in the middle of the next one.
        QtCore.QCoreApplication.sendPostedEvents(None, 0)
        self._app.processEvents()

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
        loop = QtCore.QEventLoop()
        outcome: list[bool] = []

        def check(event: Any = None) -> None:
            if not outcome and condition(object):
                outcome.append(True)
                loop.quit()

        def expire() -> None:
            if not outcome:
                outcome.append(False)
                loop.quit()

        deadline = QtCore.QTimer()
        deadline.setSingleShot(True)
        deadline.timeout.connect(expire)
        recheck = QtCore.QTimer()
        recheck.timeout.connect(check)
        catcher = Catcher(stop=expire)
        object.observe(check, trait)
        try:
            deadline.start(max(0, round(timeout * 1000)))
            recheck.start(_RECHECK_MS)
            # ``quit`` before ``exec`` would be lost, but ``check`` and
            # ``expire`` only run from inside ``exec``, on this thread.
            run = getattr(loop, "exec", None) or loop.exec_
            with catching(catcher):
                while not outcome:
                    run()
        finally:
            object.observe(check, trait, remove=True)
            deadline.stop()
            recheck.stop()
        if catcher.error is not None:
            raise catcher.error
        if not outcome[0]:
            raise RuntimeError(
                f"run_until timed out after {timeout} seconds: the condition "
                f"on {object!r} (watching trait {trait!r}) never became true"
            )


def _application() -> Any:
    """Return the process's QApplication, making it if there is none.

    Main thread only.  Without a display, set ``QT_QPA_PLATFORM=offscreen``
    first, or Qt aborts the process.
    """
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication([])
        # Keep it alive for the process: see _QtEventLoopHelper.
        _KEEP_ALIVE.append(app)
    return app


_KEEP_ALIVE: list[Any] = []
