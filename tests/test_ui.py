"""offload.ui: ActivityView and run_with_progress, driven through their widgets.

Runs on Qt (offscreen) and on wx (under Xvfb, the ``wx`` nox session).
With ``OFFLOAD_UPDATE_SCREENSHOTS=1`` the Qt runs save the docs' screenshots
of the dialog to ``docs/images``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import steps_tasks as st
import task_functions as tf
import ui_driver as drive
from conftest import wait_done, wait_file
from offload.api import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXECUTING,
    FAILED,
    FutureGroup,
    submit_call,
    submit_progress,
    submit_steps,
)

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"

GUI_MATRIX = [
    pytest.param(("thread", "qt"), id="thread-qt", marks=pytest.mark.gui),
    pytest.param(("thread", "wx"), id="thread-wx", marks=pytest.mark.gui),
]

pytestmark = pytest.mark.parametrize("matrix", GUI_MATRIX, indirect=True)


@pytest.fixture(scope="module", autouse=True)
def _first_window():
    """Open and close a first TraitsUI window before any test's leak check.

    The first window of a process starts what the toolkit keeps until exit
    (an X connection, GTK's or Qt's helper threads and their eventfds), as
    the first application does; no test may be blamed for it.
    """
    kind = _toolkit_here()
    if kind is None:
        return
    from traits.api import Any, HasTraits, Str, Tuple
    from traits.etsconfig.api import ETSConfig
    from traitsui.api import UItem, View

    from conftest import EVENT_LOOPS, load
    from offload.ui._bar import ProgressBarEditor

    if not ETSConfig.toolkit:
        ETSConfig.toolkit = kind
    helper = load(EVENT_LOOPS, kind)().event_loop_helper()
    helper.init()

    class First(HasTraits):
        text = Str("ready")
        bar = Tuple(Any(), Str(), value=(0.5, "50%"))

    first = First()
    ui = first.edit_traits(
        view=View(UItem("text"), UItem("text", style="readonly"), UItem("bar", editor=ProgressBarEditor()))
    )
    # Let it show and paint (a progress bar's first paint on Qt starts two
    # helpers, each with an eventfd, kept for good): a few loop turns,
    # the helper re-checking every 100 ms.
    turns = [0]

    def turned(_):
        turns[0] += 1
        return turns[0] > 3

    helper.run_until(HasTraits(), "trait_added", turned, 20)
    ui.dispose()
    helper.dispose()


def _toolkit_here():
    """The toolkit TraitsUI will use in this process, if it can use one."""
    try:
        import traitsui  # noqa: F401
    except ImportError:
        return None
    from traits.etsconfig.api import ETSConfig

    if ETSConfig.toolkit:
        return "wx" if ETSConfig.toolkit.startswith("wx") else "qt"
    for kind in ("qt", "wx"):
        try:
            __import__(f"offload._event_loops.{kind}")
        except ImportError:
            continue
        if kind == "wx" and not os.environ.get("DISPLAY"):
            return None
        return kind
    return None


@pytest.fixture(autouse=True)
def toolkit(loop_kind):
    """TraitsUI on the loop's toolkit (one toolkit per process), or skip."""
    pytest.importorskip("traitsui")
    from traits.etsconfig.api import ETSConfig

    if loop_kind == "wx" and not os.environ.get("DISPLAY"):
        pytest.skip("wx needs a display (run under xvfb-run)")
    current = ETSConfig.toolkit
    if not current:
        ETSConfig.toolkit = loop_kind
    elif not current.startswith(loop_kind):
        pytest.skip(f"TraitsUI uses {current} in this process, not {loop_kind}")
    return loop_kind


@pytest.fixture
def shots(tmp_path):
    """Where screenshots go: the docs' images when asked, else a temporary folder."""
    return IMAGES if os.environ.get("OFFLOAD_UPDATE_SCREENSHOTS") == "1" else tmp_path


def settle(assistant, turns=3):
    for _ in range(turns):
        assistant.exercise_event_loop()


# ActivityView ---------------------------------------------------------------


def test_activity_view_of_an_executor_shows_every_task(executor, assistant, tmp_path):
    from offload.ui import ActivityView

    release = str(tmp_path / "release")
    view = ActivityView(executor=executor)
    ui = view.edit_traits()
    try:
        steps = submit_steps(executor, 4, "Resizing cat.png", st.timed_steps, 4, 0.01, release)
        failing = submit_call(executor, tf.fail, "bad luck")
        progress = submit_progress(executor, tf.report, 3)
        assistant.run_until(view, "rows", lambda v: len(v.rows) == 3, timeout=20)
        names = [row.name for row in view.rows]
        assert names == ["Resizing cat.png", "fail", "report"]
        # The steps task waits before its last step: 3 of 4 done.
        assistant.run_until(
            steps, "complete", lambda f: f.complete == 3, timeout=20)
        row = view.rows[0]
        assistant.run_until(row, "bar", lambda r: r.bar[1] == "75% · step 3", timeout=20)
        assert row.bar[0] == 0.75 and row.state == "Running"
        wait_done(assistant, failing)
        wait_done(assistant, progress)
        tf.touch(release)
        wait_done(assistant, steps)
        assistant.run_until(view, "overall", lambda v: v.overall[0] == 1.0, timeout=20)
        assert view.overall[1] == "100% · 3 of 3 done · 1 failed"
        assert [r.state for r in view.rows] == ["Completed", "Failed", "Completed"]
        assert view.rows[1].bar[1] == "Failed: bad luck"
        assert view.rows[0].bar == (1.0, "Completed · done")
        assert view.rows[0].elapsed.endswith(" s")
    finally:
        tf.touch(release)
        ui.dispose()


def test_cancel_buttons_and_clear_finished(executor, assistant, tmp_path):
    from offload.ui import ActivityView

    started = str(tmp_path / "started")
    release = str(tmp_path / "release")
    view = ActivityView(executor=executor)
    ui = view.edit_traits()
    try:
        first = submit_steps(executor, 100, "first", st.steps_until_cancelled, started)
        second = submit_call(executor, tf.wait_for_file, release)
        done = submit_call(executor, tf.square, 4)
        wait_file(assistant, started)
        wait_done(assistant, done)
        assistant.run_until(view, "rows", lambda v: len(v.rows) == 3, timeout=20)
        settle(assistant)
        # The first row's Cancel button, through its widget.
        cancels = drive.buttons(ui.control, "Cancel")
        assert len(cancels) == 3
        assert [drive.enabled(b) for b in cancels][2] is False  # done: nothing to cancel
        drive.click(cancels[0])
        wait_done(assistant, first)
        assert first.state == CANCELLED and second.state in (EXECUTING, "waiting")
        # Clear finished: the cancelled and the completed rows go.
        drive.click(drive.buttons(ui.control, "Clear finished")[0])
        assert [row.future for row in view.rows] == [second]
        drive.click(drive.buttons(ui.control, "Cancel all")[0])
        tf.touch(release)
        wait_done(assistant, second)
        assert second.state == CANCELLED
    finally:
        tf.touch(release)
        ui.dispose()


def test_activity_view_of_a_group_follows_what_is_added(executor, assistant):
    from offload.ui import ActivityView

    group = FutureGroup(futures=[submit_call(executor, tf.square, 2)])
    view = ActivityView(group=group)
    ui = view.edit_traits()
    try:
        assert len(view.rows) == 1 and view.rows[0].name == "CallFuture"
        later = submit_steps(executor, 3, "later", st.steps, 3)
        view.add(submit_call(executor, tf.square, 3), name="three squared")
        group.add(later)
        assistant.run_until(group, "done", lambda g: g.done, timeout=20)
        assistant.run_until(view, "rows", lambda v: len(v.rows) == 3, timeout=20)
        assert [row.name for row in view.rows] == ["CallFuture", "three squared", "later"]
        assistant.run_until(view, "overall", lambda v: v.overall[0] == 1.0, timeout=20)
        assert view.overall[1] == "100% · 3 of 3 done"
    finally:
        ui.dispose()


# run_with_progress ---------------------------------------------------------------


def test_run_with_progress_returns_the_completed_future(executor, assistant):
    from offload.ui import run_with_progress

    future = submit_steps(executor, 20, "Counting", st.timed_steps, 20, 0.01, __file__)
    assert run_with_progress(future) is future
    assert future.state == COMPLETED
    assert not drive.windows("Counting")


@pytest.mark.parametrize("how", ["cancel", "escape", "close"])
def test_every_way_to_close_cancels_and_waits_for_cancelled(executor, assistant, tmp_path,
                                                            how, shots, toolkit):
    """Cancel, Escape and the window's close button all cancel; the dialog
    stays open, Cancel disabled, until the task has ended."""
    from offload.ui import run_with_progress

    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    # Steps until the release, ignoring cancellation meanwhile.
    future = submit_steps(executor, 10, "Ignoring you", st.stop_after_cancel, started, release)
    title = "Copying files"
    dialog = []

    def act():
        window = drive.windows(title)[0]
        dialog.append(window)
        if how == "cancel":
            drive.click(drive.buttons(window, "Cancel")[0])
        elif how == "escape":
            drive.press_escape(window)
        else:
            drive.ask_to_close(window)

    def still_open_and_disabled():
        window = drive.windows(title)
        assert window, "the dialog closed before the task ended"
        (cancel,) = drive.buttons(window[0], "Cancel")
        assert not drive.enabled(cancel)
        assert future.state == CANCELLING
        if how == "cancel" and toolkit == "qt":
            drive.grab(window[0], str(shots / "run_with_progress_cancelling.png"))
        tf.touch(release)

    script = drive.Script(
        [
            ("the dialog and the task running",
             lambda: bool(drive.windows(title)) and os.path.exists(started)
             and future.state == EXECUTING, act),
            ("the cancel asked", lambda: future.state == CANCELLING, lambda: None),
            ("a moment, still cancelling", lambda: True, still_open_and_disabled),
        ],
        rescue=lambda: (future.cancel(), tf.touch(release)),
    )
    try:
        assert run_with_progress(future, title=title) is future
    finally:
        tf.touch(release)
    script.check()
    assert future.state == CANCELLED
    assert not drive.windows(title)


def test_a_failure_is_shown_until_the_user_closes(executor, assistant, tmp_path, shots,
                                                  toolkit):
    from offload.ui import run_with_progress

    future = submit_steps(executor, 10, "Failing", st.steps_then_fail, 4)
    title = "Failing"

    def shows_failure():
        (window,) = drive.windows(title)
        assert future.state == FAILED
        assert not drive.buttons(window, "Cancel")
        if toolkit == "qt":
            drive.grab(window, str(shots / "run_with_progress_failed.png"))
        drive.click(drive.buttons(window, "Close")[0])

    script = drive.Script(
        [("the failure shown",
          lambda: future.state == FAILED and bool(drive.windows(title))
          and bool(drive.buttons(drive.windows(title)[0], "Close")),
          shows_failure)],
        rescue=lambda: [drive.ask_to_close(w) for w in drive.windows(title)],
    )
    assert run_with_progress(future) is future
    script.check()
    assert future.state == FAILED and not drive.windows(title)


def test_a_running_dialog_shows_percentage_and_message(executor, assistant, tmp_path,
                                                       shots, toolkit):
    from offload.ui import run_with_progress

    release = str(tmp_path / "release")
    future = submit_steps(executor, 4, "Resizing photos", st.timed_steps, 4, 0.01, release)
    title = "Resizing photos"
    seen = []

    def bar_text():
        windows = drive.windows(title)
        if not windows:
            return None
        if toolkit == "qt":
            from pyface.qt import QtGui

            (bar,) = windows[0].findChildren(QtGui.QProgressBar)
            return bar.text()
        import wx

        labels = []

        def walk(widget):
            for child in widget.GetChildren():
                if isinstance(child, wx.StaticText):
                    labels.append(child.GetLabel())
                walk(child)

        walk(windows[0])
        return next((label for label in labels if "%" in label), None)

    def look():
        seen.append(bar_text())
        drive.grab(drive.windows(title)[0], str(shots / "run_with_progress.png"))
        tf.touch(release)

    script = drive.Script(
        [("the bar at three steps of four", lambda: bar_text() == "75% · step 3", look)],
        rescue=lambda: (future.cancel(), tf.touch(release)),
    )
    try:
        run_with_progress(future)
    finally:
        tf.touch(release)
    script.check()
    assert seen == ["75% · step 3"]
    assert future.state == COMPLETED


def test_a_done_future_returns_at_once(executor, assistant):
    from offload.ui import run_with_progress

    future = submit_call(executor, tf.square, 5)
    wait_done(assistant, future)
    assert run_with_progress(future) is future
