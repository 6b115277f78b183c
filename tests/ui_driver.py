"""Drive TraitsUI windows in tests, on Qt (offscreen) or wx (under Xvfb).

Finds windows by title and buttons by label, clicks them, presses Escape,
asks a window to close (as its title bar's button does), and runs steps
while a modal dialog's own event loop runs (:class:`Script`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from traits.etsconfig.api import ETSConfig


def is_qt() -> bool:
    return ETSConfig.toolkit != "wx"


def windows(title: str) -> list[Any]:
    """The visible top-level windows titled ``title``."""
    if is_qt():
        from pyface.qt import QtGui

        found = QtGui.QApplication.topLevelWidgets()
        return [w for w in found if w.isVisible() and w.windowTitle() == title]
    import wx

    return [w for w in wx.GetTopLevelWindows() if w.IsShown() and w.GetTitle() == title]


def buttons(window: Any, label: str) -> list[Any]:
    """The visible buttons labelled ``label`` inside ``window``."""
    if is_qt():
        from pyface.qt import QtGui

        return [
            b for b in window.findChildren(QtGui.QPushButton)
            if b.text().replace("&", "") == label and b.isVisible()
        ]
    import wx

    found = []

    def walk(widget: Any) -> None:
        for child in widget.GetChildren():
            if (isinstance(child, wx.Button) and child.GetLabel().replace("&", "") == label
                    and child.IsShown()):
                found.append(child)
            walk(child)

    walk(window)
    return found


def enabled(button: Any) -> bool:
    return button.isEnabled() if is_qt() else button.IsEnabled()


def click(button: Any) -> None:
    if is_qt():
        from pyface.qt import QtCore

        button.click()
        # TraitsUI connects ``clicked`` through a queued connection.
        QtCore.QCoreApplication.sendPostedEvents()
        return
    import wx

    event = wx.CommandEvent(wx.wxEVT_BUTTON, button.GetId())
    event.SetEventObject(button)
    button.GetEventHandler().ProcessEvent(event)


def press_escape(window: Any) -> None:
    """What the Escape key does to a dialog."""
    if is_qt():
        from pyface.qt import QtCore, QtGui

        event = QtGui.QKeyEvent(
            QtCore.QEvent.Type.KeyPress, QtCore.Qt.Key.Key_Escape,
            QtCore.Qt.KeyboardModifier.NoModifier,
        )
        QtGui.QApplication.sendEvent(window, event)
        return
    import wx

    # TraitsUI's wx windows take Escape from their EVT_CHAR.
    event = wx.KeyEvent(wx.wxEVT_CHAR)
    event.SetKeyCode(wx.WXK_ESCAPE)
    event.SetEventObject(window)
    window.GetEventHandler().ProcessEvent(event)


def ask_to_close(window: Any) -> None:
    """What the title bar's close button does."""
    if is_qt():
        window.close()
    else:
        window.Close()


def grab(window: Any, path: str) -> None:
    """Save a screenshot of ``window`` (Qt only)."""
    if is_qt():
        assert window.grab().save(path), f"screenshot {path} not saved"


class Script:
    """Steps run by a timer while a modal dialog's loop runs.

    Each step is ``(what, condition, action)``: once ``condition()`` holds,
    ``action()`` runs and the next step waits.  A step that waits longer
    than ``timeout`` s, or raises, ends the script with the error kept in
    :attr:`error` and calls ``rescue()`` (which must end the dialog, e.g.
    by letting its task end).
    """

    def __init__(
        self,
        steps: list[tuple[str, Callable[[], bool], Callable[[], Any]]],
        rescue: Callable[[], None],
        timeout: float = 20.0,
    ) -> None:
        from pyface.timer.api import CallbackTimer

        self.steps = list(steps)
        self.rescue = rescue
        self.timeout = timeout
        self.error: BaseException | None = None
        self.done: list[str] = []
        self._since = time.monotonic()
        self._timer = CallbackTimer(interval=0.02, callback=self._tick)
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def check(self) -> None:
        """Raise what went wrong, and fail if steps were left."""
        self.stop()
        if self.error is not None:
            raise self.error
        assert not self.steps, f"steps never reached: {[s[0] for s in self.steps]}"

    def _tick(self) -> None:
        if not self.steps or self.error is not None:
            return
        what, condition, action = self.steps[0]
        try:
            if condition():
                self.steps.pop(0)
                self.done.append(what)
                self._since = time.monotonic()
                action()
            elif time.monotonic() - self._since > self.timeout:
                raise AssertionError(f"timed out waiting for: {what} (done: {self.done})")
        except BaseException as error:  # noqa: BLE001 - kept, raised by check()
            self.error = error
            self.rescue()
