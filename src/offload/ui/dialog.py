"""run_with_progress: a modal progress dialog for one future.

The open questions of Traits Futures' steps dialog, answered:

- the window's close button, Escape and Cancel do the same thing: they ask
  the future to cancel; the dialog then stays open, its Cancel disabled and
  its bar saying "Cancelling...", until the future is CANCELLED (a task
  that ignores cancellation keeps it open: closing it would hide work
  that still runs);
- it closes itself once the future is COMPLETED or CANCELLED;
- a FAILED future's message stays in the dialog until the user closes it
  (Close, Escape or the window's button): an error must not vanish with
  the window that would have shown it.
"""

from __future__ import annotations

from typing import Any

from pyface.timer.api import CallbackTimer
from traits.api import Any as AnyTrait
from traits.api import Bool, Button, Str, observe
from traits.etsconfig.api import ETSConfig
from traitsui.api import Handler, HGroup, Spring, UItem, VGroup, View

from offload._event_loops.asyncio_loop import AsyncioEventLoop
from offload._futures.base import IFuture, event_loop_of
from offload._futures.states import CANCELLED, COMPLETED, FAILED
from offload._futures.steps import StepsFuture
from offload.ui._bar import ProgressBarEditor
from offload.ui._rows import FutureRow

#: Seconds between two refreshes of the bar and the elapsed time.
REFRESH_INTERVAL = 0.1


def run_with_progress(future: Any, title: str | None = None, *, parent: Any = None) -> Any:
    """Show a modal progress dialog for ``future``; return it once done.

    Call it on the main thread, with the future of an executor whose event
    loop is the GUI's: the dialog's own event loop delivers the task's
    messages.  The dialog shows a bar with the percentage and message the
    task reports (steps futures; progress futures reporting a float from 0
    to 1, ``(done, total)``, ``(done, total, message)`` or a str), the time
    since it started, and Cancel.

    Closing the window, Escape and Cancel all cancel the future; the dialog
    then stays open, disabled, until the future is CANCELLED.  It closes
    itself when the future is COMPLETED or CANCELLED; a failure is shown
    with its message until the user closes the dialog.

    Parameters
    ----------
    future : future
        A future of a submitted task (any kind).
    title : str, optional
        The window title.  Default: a steps task's first message, else
        "Working".
    parent : toolkit window, optional
        The window the dialog belongs to.

    Returns
    -------
    future
        The same future, done: look at its ``state``, ``result`` or
        ``exception``.

    Raises
    ------
    RuntimeError
        If the future's executor delivers on an asyncio loop, which a
        modal dialog's loop does not run.
    """
    if not isinstance(future, IFuture):
        raise TypeError(f"run_with_progress needs a future, got {future!r}")
    _check_gui_loop(future)
    if future.done and future.state != FAILED:  # type: ignore[attr-defined]
        return future
    if title is None:
        title = (future.message if isinstance(future, StepsFuture) else "") or "Working"
    dialog = ProgressDialogModel(future)
    try:
        _show_modal(dialog, _dialog_view(title), parent)
    finally:
        dialog.stop()
    return future


def _show_modal(model: ProgressDialogModel, view: View, parent: Any) -> None:
    """Show the dialog, modal, and return once it has closed (main thread).

    wx: TraitsUI's own modal dialog.  Qt: TraitsUI 8.0's calls ``exec_()``,
    which PyQt6 does not have (and PySide6 deprecates), so the dialog is
    opened as a live window made application-modal before it shows, and a
    nested Qt event loop runs until it closes.
    """
    if ETSConfig.toolkit == "wx":
        model.edit_traits(view=view, kind="livemodal", parent=parent, handler=_DialogHandler())
        return
    from pyface.qt import QtCore

    loop = QtCore.QEventLoop()
    handler = _DialogHandler(on_closed=loop.quit, qt_modal=True)
    model.edit_traits(view=view, kind="live", parent=parent, handler=handler)
    if not handler.is_closed:
        run = getattr(loop, "exec", None) or loop.exec_
        run()


class ProgressDialogModel(FutureRow):
    """What the dialog shows: a row of one future, and its failure."""

    #: The failure's message, once the future FAILED.
    failure = Str()

    #: The user asked to cancel (Cancel, Escape or the window's button).
    cancel_asked = Bool(False)

    #: Closes the dialog once the future failed.
    close = Button("Close")

    # Private ----------------------------------------------------------------

    _ui = AnyTrait(None)
    _timer = AnyTrait(None)

    def __init__(self, future: Any, **traits: Any) -> None:
        super().__init__(future, **traits)
        self._timer = CallbackTimer(interval=REFRESH_INTERVAL, callback=self._tick)
        self._timer.start()
        self._finish_if_done()

    def ask_cancel(self) -> None:
        """The user wants the task to stop: cancel, keep the dialog open."""
        self.cancel_asked = True
        self.future.cancel()
        self.refresh()

    def stop(self) -> None:
        """Stop the refresh timer and following the future."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.forget()

    @observe("cancel")
    def _cancel_future(self, event: Any) -> None:
        # Replaces FutureRow's: the dialog also disables itself.
        self.ask_cancel()

    @observe("close")
    def _close_dialog(self, event: Any) -> None:
        self._dispose_ui()

    def _state_changed(self, event: Any) -> None:
        super()._state_changed(event)
        if self.cancel_asked and not self.done:
            self.bar = (self.bar[0], "Cancelling...")
        self._finish_if_done()

    def _finish_if_done(self) -> None:
        future = self.future
        if not future.done:
            return
        if future.state == FAILED:
            self.failure = f"{future.exception[0]}: {future.exception[1]}"
            return
        # COMPLETED or CANCELLED: nothing to show any more.
        self._dispose_ui()

    def _dispose_ui(self) -> None:
        ui, self._ui = self._ui, None
        if ui is not None:
            ui.dispose()

    def _tick(self) -> None:
        if not self.done:
            self.refresh()
            if self.cancel_asked:
                self.bar = (self.bar[0], "Cancelling...")


class _DialogHandler(Handler):
    """Every way to close the dialog cancels the future first."""

    #: Called once the dialog has closed.
    on_closed = AnyTrait(None)

    #: Make the Qt window application-modal before it shows.
    qt_modal = Bool(False)

    #: The dialog has closed.
    is_closed = Bool(False)

    def init(self, info: Any) -> bool:
        model = info.object
        model._ui = info.ui
        if self.qt_modal:
            from pyface.qt import QtCore

            info.ui.control.setWindowModality(QtCore.Qt.WindowModality.ApplicationModal)
        # Done before the window opened (a quick task): close at once.
        if model.future.done and model.future.state in (COMPLETED, CANCELLED):
            model._ui = None
            info.ui.dispose()
        return True

    def close(self, info: Any, is_ok: bool) -> bool:
        model = info.object
        if model.future.done:
            return True
        if not model.cancel_asked:
            model.ask_cancel()
        return False

    def closed(self, info: Any, is_ok: bool) -> None:
        info.object._ui = None
        self.is_closed = True
        if self.on_closed is not None:
            self.on_closed()


def _dialog_view(title: str) -> View:
    return View(
        VGroup(
            UItem("bar", editor=ProgressBarEditor()),
            HGroup(UItem("state", style="readonly"), Spring(),
                   UItem("elapsed", style="readonly")),
            UItem("failure", style="readonly", visible_when="failure"),
            HGroup(
                Spring(),
                UItem("cancel", enabled_when="cancellable and not cancel_asked",
                      visible_when="not failure"),
                UItem("close", visible_when="failure"),
            ),
        ),
        title=title,
        width=420,
        resizable=True,
    )


def _check_gui_loop(future: Any) -> None:
    """A modal dialog runs the GUI's loop: refuse a future delivered by asyncio."""
    event_loop = event_loop_of(future)
    inner = getattr(event_loop, "toolkit_event_loop", event_loop)
    if isinstance(inner, AsyncioEventLoop):
        raise RuntimeError(
            "run_with_progress shows a modal dialog, whose event loop is the "
            "GUI's, but this future's executor delivers its messages on an "
            "asyncio loop, which would not run meanwhile; make the executor "
            "with the default event loop (ETSEventLoop) or QtEventLoop / "
            "WxEventLoop"
        )
