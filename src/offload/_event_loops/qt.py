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

from collections.abc import Callable
from typing import Any

from offload._event_loops.gui_base import (
    GuiLoopHelper,
    GuiWaker,
    WakerPingee,
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


class _Waker(QtCore.QObject, GuiWaker):
    """offload's waker on Qt (see :class:`GuiWaker`): a main-thread QObject.

    A worker's wake posts a plain ``QEvent`` of our private type to it; the
    main thread's own wakes go through a zero-delay single-shot ``QTimer``.
    The dispatcher's ``aboutToBlock`` nudges a suspended delivery.
    """

    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__()
        self._start(callback)
        self._timer = QtCore.QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timer)

    def event(self, event: QtCore.QEvent) -> bool:
        # Main thread, inside the Qt loop.
        if event.type() == _WAKE_EVENT:
            self._run()
            return True
        return super().event(event)

    def _run(self) -> None:
        if not self._depth and not _WATCHED_DISPATCHER:
            _watch_the_dispatcher()
        GuiWaker._run(self)

    def _post(self) -> None:
        QtCore.QCoreApplication.postEvent(self, QtCore.QEvent(_WAKE_EVENT))

    def _timer_running(self) -> bool:
        return self._timer.isActive()

    def _start_timer(self) -> None:
        self._timer.start(0)


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

    def _new_loop(self) -> Any:
        return QtCore.QEventLoop()

    def _run_loop(self, loop: Any) -> None:
        run = getattr(loop, "exec", None) or loop.exec_  # PyQt5 has exec_ only
        run()

    def _quit_loop(self, loop: Any) -> None:
        loop.quit()

    def _timer(
        self, ms: int, callback: Callable[[], None], single_shot: bool
    ) -> Callable[[], None]:
        timer = QtCore.QTimer()
        timer.setSingleShot(single_shot)
        timer.timeout.connect(callback)
        timer.start(ms)
        return timer.stop


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
