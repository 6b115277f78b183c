"""Observers that run a nested event loop (issue 29, pattern 3), on Qt and wx.

A GUI observer often blocks in a nested loop: a modal dialog on ``done``
(pyface's ``information(...)``), or an explicit ``QEventLoop.exec()`` /
wx modal.  While it waits, other futures must keep being updated (a dialog
that waits for another future closes), each task's messages in order, none
lost or delivered twice; a task's next message waits until the observer of
its previous one has returned.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from traits.api import HasStrictTraits, List

import task_functions as tf
from conftest import EVENT_LOOPS, load
from offload.api import (
    COMPLETED,
    EXECUTING,
    MultithreadingContext,
    TraitsExecutor,
    submit_call,
    submit_progress,
)

#: The GUI loops, each marked ``gui``.
GUI_LOOPS = [pytest.param(kind, marks=pytest.mark.gui) for kind in ["qt", "wx"]]

#: Longest wait (s) of a nested loop: past it the test fails, never hangs.
NESTED_TIMEOUT = 15.0


class Record(HasStrictTraits):
    """What the observers saw, in order; the tests run the loop until it fills."""

    entries = List()


@pytest.fixture(params=GUI_LOOPS)
def gui_kind(request: pytest.FixtureRequest) -> str:
    load(EVENT_LOOPS, request.param)  # skips when the toolkit is missing
    return request.param


@pytest.fixture
def gui_loop(gui_kind: str) -> Any:
    return load(EVENT_LOOPS, gui_kind)()


@pytest.fixture
def helper(gui_loop: Any) -> Iterator[Any]:
    helper = gui_loop.event_loop_helper()
    helper.init()
    yield helper
    helper.dispose()


@pytest.fixture
def executor(gui_loop: Any, helper: Any) -> Iterator[TraitsExecutor]:
    context = MultithreadingContext()
    executor = TraitsExecutor(context=context, event_loop=gui_loop)
    try:
        yield executor
    finally:
        executor.shutdown(timeout=20)
        context.close()


@pytest.mark.leaks_ok("the process's first dialog opens what the toolkit keeps until exit")
def test_a_dialog_before_the_others(gui_kind, helper):
    # The first test of this module: GTK keeps an eventfd from the first
    # dialog the process shows, which the leak check must not blame on
    # the tests below.
    if gui_kind == "wx":
        import wx

        dialog = wx.Dialog(None, title="first")
        wx.CallLater(10, dialog.EndModal, wx.ID_OK)
        assert dialog.ShowModal() == wx.ID_OK
        dialog.Destroy()
    else:
        from pyface.qt import QtCore, QtWidgets

        qt_dialog = QtWidgets.QDialog()
        QtCore.QTimer.singleShot(10, lambda: qt_dialog.done(1))
        run = getattr(qt_dialog, "exec", None) or qt_dialog.exec_
        assert run() == 1


def nested_loop_until(gui_kind: str, future: Any) -> None:
    """Run a nested event loop (as a modal dialog does) until ``future`` is
    done, or ``NESTED_TIMEOUT`` seconds have passed."""
    if gui_kind == "qt":
        from pyface.qt import QtCore

        loop = QtCore.QEventLoop()
        future.observe(lambda event: loop.quit(), "done")
        safety = QtCore.QTimer()
        safety.setSingleShot(True)
        safety.timeout.connect(loop.quit)
        safety.start(int(NESTED_TIMEOUT * 1000))
        if not future.done:
            run = getattr(loop, "exec", None) or loop.exec_
            run()
        safety.stop()
        return
    import wx

    wx_loop = wx.GUIEventLoop()

    def leave(event: Any = None) -> None:
        if wx_loop.IsRunning():
            wx_loop.Exit()

    future.observe(leave, "done")
    wx_safety = wx.CallLater(int(NESTED_TIMEOUT * 1000), leave)
    if not future.done:
        wx_loop.Run()
    wx_safety.Stop()


def modal_dialog_until(gui_kind: str, future: Any) -> None:
    """Show a modal dialog that the end of ``future`` closes (safety:
    ``NESTED_TIMEOUT``)."""
    if gui_kind == "qt":
        from pyface.qt import QtCore, QtWidgets

        dialog = QtWidgets.QDialog()
        future.observe(lambda event: dialog.done(0), "done")
        QtCore.QTimer.singleShot(int(NESTED_TIMEOUT * 1000), lambda: dialog.done(0))
        if not future.done:
            run = getattr(dialog, "exec", None) or dialog.exec_
            run()
        return
    import wx

    wx_dialog = wx.Dialog(None, title="waiting")

    def close(event: Any = None) -> None:
        if wx_dialog.IsModal():
            wx_dialog.EndModal(wx.ID_OK)

    future.observe(close, "done")
    safety = wx.CallLater(int(NESTED_TIMEOUT * 1000), close)
    if not future.done:
        wx_dialog.ShowModal()
    safety.Stop()
    wx_dialog.Destroy()


WAITS = [
    pytest.param(nested_loop_until, id="nested-loop"),
    pytest.param(modal_dialog_until, id="modal-dialog"),
]


@pytest.mark.parametrize("wait", WAITS)
def test_a_modal_wait_in_a_done_observer_sees_another_future_finish(
    gui_kind, executor, helper, tmp_path, wait
):
    release = str(tmp_path / "release")
    slow = submit_call(executor, tf.wait_for_file, release)
    quick = submit_call(executor, tf.square, 3)
    record = Record()

    def wait_for_slow(event: Any) -> None:
        tf.touch(release)
        wait(gui_kind, slow)
        record.entries.append(slow.state)

    quick.observe(wait_for_slow, "done")
    helper.run_until(record, "entries_items", lambda r: r.entries, timeout=40)
    assert record.entries == [COMPLETED]
    assert slow.result == release
    assert quick.result == 9


def test_pyface_information_on_done_closes_when_another_future_ends(
    gui_kind, executor, helper, tmp_path
):
    if gui_kind != "qt":
        pytest.skip("pyface's wx information() is a native dialog that a test cannot close")
    from pyface.api import information
    from pyface.qt import QtCore, QtWidgets

    def close_dialog(event: Any = None) -> None:
        dialog = QtWidgets.QApplication.activeModalWidget()
        if dialog is not None:
            dialog.done(0)

    release = str(tmp_path / "release")
    slow = submit_call(executor, tf.wait_for_file, release)
    quick = submit_call(executor, tf.square, 3)
    slow.observe(close_dialog, "done")
    record = Record()

    def tell_the_user(event: Any) -> None:
        tf.touch(release)
        QtCore.QTimer.singleShot(int(NESTED_TIMEOUT * 1000), close_dialog)
        information(None, "The quick task is done.")
        record.entries.append(slow.state)

    quick.observe(tell_the_user, "done")
    helper.run_until(record, "entries_items", lambda r: r.entries, timeout=40)
    assert record.entries == [COMPLETED]


def test_nested_waits_inside_nested_waits(gui_kind, executor, helper, tmp_path):
    # quick's observer waits for first; first's observer waits for second.
    release_first = str(tmp_path / "first")
    release_second = str(tmp_path / "second")
    first = submit_call(executor, tf.wait_for_file, release_first)
    second = submit_call(executor, tf.wait_for_file, release_second)
    quick = submit_call(executor, tf.square, 2)
    record = Record()

    def wait_for_first(event: Any) -> None:
        tf.touch(release_first)
        modal_dialog_until(gui_kind, first)
        record.entries.append(("first", first.state, second.state))

    def wait_for_second(event: Any) -> None:
        tf.touch(release_second)
        nested_loop_until(gui_kind, second)
        record.entries.append(("second", second.state))

    quick.observe(wait_for_first, "done")
    first.observe(wait_for_second, "done")
    helper.run_until(record, "entries_items", lambda r: len(r.entries) == 2, timeout=40)
    assert record.entries == [("second", COMPLETED), ("first", COMPLETED, COMPLETED)]


def test_a_tasks_next_message_waits_for_its_observer_to_return(
    gui_kind, executor, helper, tmp_path
):
    # The observer of progress 0 waits (nested) for another task; meanwhile
    # that task's messages are delivered, not this task's next ones.
    release = str(tmp_path / "release")
    other = submit_call(executor, tf.wait_for_file, release)
    helper.run_until(other, "state", lambda f: f.state == EXECUTING, timeout=20)
    reporting = submit_progress(executor, tf.report, 5)
    record = Record()

    def on_progress(event: Any) -> None:
        record.entries.append(("start", event.new))
        if event.new == 0:
            tf.touch(release)
            nested_loop_until(gui_kind, other)
            record.entries.append(("other done", other.done))
        record.entries.append(("end", event.new))

    reporting.observe(on_progress, "progress")
    helper.run_until(reporting, "done", lambda f: f.done, timeout=40)
    expected: list[tuple[str, Any]] = [("start", 0), ("other done", True), ("end", 0)]
    for i in range(1, 5):
        expected += [("start", i), ("end", i)]
    assert record.entries == expected
    assert reporting.result == 5


def test_a_flood_keeps_coming_into_a_modal_wait(gui_kind, executor, helper, tmp_path):
    # While a dialog waits, another task's 20,000 progress messages all
    # arrive, in order, once each.
    release = str(tmp_path / "release")
    waiting = submit_call(executor, tf.wait_for_file, release)
    quick = submit_call(executor, tf.square, 1)
    seen: list[int] = []
    record = Record()

    def release_when_flood_done(event: Any) -> None:
        tf.touch(release)

    def open_dialog(event: Any) -> None:
        flood = submit_progress(executor, tf.report, 20_000)
        flood.observe(lambda event: seen.append(event.new), "progress")
        flood.observe(release_when_flood_done, "done")
        modal_dialog_until(gui_kind, waiting)
        record.entries.append(flood.state)

    quick.observe(open_dialog, "done")
    helper.run_until(record, "entries_items", lambda r: r.entries, timeout=60)
    assert record.entries == [COMPLETED]
    assert seen == list(range(20_000))


def test_shutdown_in_an_observer_inside_a_nested_wait(gui_kind, executor, helper, tmp_path):
    release = str(tmp_path / "release")
    slow = submit_call(executor, tf.wait_for_file, release)
    quick = submit_call(executor, tf.square, 3)
    record = Record()

    def stop_everything(event: Any) -> None:
        executor.shutdown(timeout=20)
        record.entries.append(("shut down", executor.state))

    def wait_for_slow(event: Any) -> None:
        tf.touch(release)
        nested_loop_until(gui_kind, slow)
        record.entries.append(("waited", slow.state))

    quick.observe(wait_for_slow, "done")
    slow.observe(stop_everything, "done")
    helper.run_until(record, "entries_items", lambda r: len(r.entries) == 2, timeout=40)
    assert record.entries == [("shut down", "stopped"), ("waited", COMPLETED)]

