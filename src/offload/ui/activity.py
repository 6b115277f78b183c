"""ActivityView: what runs, one row per future, with one bar for them all."""

from __future__ import annotations

from typing import Any

from pyface.timer.api import CallbackTimer
from traits.api import Any as AnyTrait
from traits.api import Button, HasStrictTraits, Instance, List, Str, Tuple, observe
from traitsui.api import Handler, HGroup, Item, UItem, VGroup, View

from offload._executor.executor import TraitsExecutor
from offload._futures.group import FutureGroup
from offload.ui._bar import ProgressBarEditor
from offload.ui._list import SubviewListEditor
from offload.ui._rows import FutureRow, name_of_task

#: Seconds between two refreshes of the rows (elapsed times, and bars of
#: running tasks): the most a row repaints a second is its inverse.
REFRESH_INTERVAL = 0.2

_ROW_VIEW = View(
    HGroup(
        UItem("name", style="readonly", width=-170),
        UItem("state", style="readonly", width=-80),
        UItem("bar", editor=ProgressBarEditor(), springy=True),
        UItem("elapsed", style="readonly", width=-60),
        UItem("cancel", enabled_when="cancellable"),
    ),
)


class ActivityView(HasStrictTraits):
    """A TraitsUI view of many futures: one row each, one bar for all.

    Each row shows the future's name (given to :meth:`add`, else a steps
    task's first message, else its task's callable), its state, a bar with
    the percentage and message it reports (steps futures; progress futures
    that report a float from 0 to 1, ``(done, total)``, ``(done, total,
    message)`` or a str), the time since it started, and a Cancel button.
    *Clear finished* removes the rows of futures that are done; *Cancel
    all* cancels the rest.

    Parameters
    ----------
    executor : TraitsExecutor, optional
        Show every task submitted to it from now on.
    group : FutureGroup, optional
        Show the futures of this group, and those added to it later.  By
        default a new, empty group (see :attr:`group`).

    Notes
    -----
    Make it, and open it (``view.edit_traits()``), on the main thread, with
    an executor whose event loop is the GUI's.  Rows are added once per
    batch of delivered messages (when the group's ``total`` notifies), and
    refreshed a few times a second while tasks run.
    """

    #: The executor whose submissions are shown, if any.
    executor = Instance(TraitsExecutor)

    #: The futures shown, and the overall bar's source.
    group = Instance(FutureGroup)

    #: The rows, in the order the futures were added.
    rows = List(Instance(FutureRow))

    #: ``(fraction, text)`` of the whole group: "70% · 35 of 50 done".
    overall = Tuple(AnyTrait(), Str())

    #: Cancels every future of the group that is not done.
    cancel_all = Button("Cancel all")

    #: Removes the rows of the futures that are done.
    clear_finished = Button("Clear finished")

    #: The window title.
    title = Str("Activity")

    # Private ----------------------------------------------------------------

    #: id(future) -> (name given to add(), name of the task's callable).
    _names = AnyTrait()
    #: id(future) of the futures with a row, or cleared.
    _seen = AnyTrait()
    _timer = AnyTrait(None)

    def __init__(self, **traits: Any) -> None:
        self._names = {}
        self._seen = set()
        super().__init__(**traits)
        if self.group is None:
            self.group = FutureGroup()
        self._sync_rows(None)

    def add(self, future: Any, name: str = "") -> None:
        """Show ``future`` (adding it to :attr:`group`), named ``name``.

        Without a name, a steps task's row is named by its first message,
        another's by its class.
        """
        self._add(future, name, "")

    def _add(self, future: Any, name: str, callable_name: str) -> None:
        if name or callable_name:
            self._names[id(future)] = (name, callable_name)
        group: Any = self.group
        group.add(future)

    def dispose(self) -> None:
        """Stop the refresh timer and following the futures (main thread).

        Called when the window of the view's default ``View`` closes; call
        it yourself if you show the view in a ``View`` of your own.
        """
        self._stop_timer()
        rows: list[Any] = self.rows
        for row in rows:
            row.forget()

    # Handlers (main thread) -------------------------------------------------

    @observe("executor:submitted")
    def _submitted(self, event: Any) -> None:
        future, task = event.new
        self._add(future, "", name_of_task(task))

    @observe("group:total")
    def _sync_rows(self, event: Any) -> None:
        group: Any = self.group
        new = []
        for future in group.futures:
            key = id(future)
            if key not in self._seen:
                self._seen.add(key)
                new.append(FutureRow(future, *self._names.pop(key, ("", ""))))
        if new:
            self.rows.extend(new)
        self._refresh_overall(None)
        self._run_timer()

    @observe("group:done_count,group:failed_count,group:cancelled_count,group:fraction")
    def _refresh_overall(self, event: Any) -> None:
        group: Any = self.group
        text = f"{group.fraction:.0%} · {group.done_count} of {group.total} done"
        if group.failed_count:
            text += f" · {group.failed_count} failed"
        if group.cancelled_count:
            text += f" · {group.cancelled_count} cancelled"
        self.overall = (group.fraction, text)

    @observe("cancel_all")
    def _cancel_all(self, event: Any) -> None:
        group: Any = self.group
        group.cancel()

    @observe("clear_finished")
    def _clear_finished(self, event: Any) -> None:
        kept = []
        rows: list[Any] = self.rows
        for row in rows:
            if row.done:
                row.forget()
            else:
                kept.append(row)
        self.rows = kept

    # Refresh timer ----------------------------------------------------------

    def _run_timer(self) -> None:
        rows: list[Any] = self.rows
        if self._timer is None and any(not row.done for row in rows):
            self._timer = CallbackTimer(interval=REFRESH_INTERVAL, callback=self._tick)
            self._timer.start()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _tick(self) -> None:
        running = False
        rows: list[Any] = self.rows
        for row in rows:
            if not row.done:
                running = True
                row.refresh()
            elif row.stale:
                row.refresh()
        if not running:
            self._stop_timer()

    def default_traits_view(self) -> View:
        return View(
            VGroup(
                HGroup(
                    UItem("overall", editor=ProgressBarEditor(), springy=True),
                    UItem("cancel_all"),
                    UItem("clear_finished"),
                ),
                Item(
                    "rows",
                    show_label=False,
                    editor=SubviewListEditor(view=_ROW_VIEW),
                    resizable=True,
                    springy=True,
                ),
            ),
            title=self.title,
            resizable=True,
            width=720,
            height=420,
            handler=_ActivityHandler(),
        )


class _ActivityHandler(Handler):
    """Stops the view's timer when its window closes."""

    def closed(self, info: Any, is_ok: bool) -> None:
        info.object.dispose()
