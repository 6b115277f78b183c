"""Pause, resume and send: on every context x event loop of the matrix.

A paused task must stop at its next pause point and stay there (checked
over a short window: nothing can prove "never"), lose nothing, and wake on
``resume()`` or ``cancel()``.
"""

from __future__ import annotations

import gc
import logging
import time

import pytest

import pause_tasks as pt
import steps_tasks as st
import task_functions as tf
from conftest import wait_done, wait_file
from offload.api import (
    CANCELLED,
    COMPLETED,
    EXECUTING,
    FAILED,
    WAITING,
    TaskTimedOut,
    submit_call,
    submit_iteration,
    submit_progress,
    submit_steps,
)

#: Seconds a paused task is watched to check it does not move.
WINDOW = 0.4


def collect(future, trait="result_event"):
    items = []
    future.observe(lambda event: items.append(event.new), trait)
    return items


def hold(assistant, seconds=WINDOW):
    """Run the event loop for ``seconds`` (an observation window)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assistant.exercise_event_loop()
        time.sleep(0.01)


def wait_items(assistant, future, items, count, timeout=20):
    """Run the loop until ``items`` has at least ``count`` entries."""
    deadline = time.monotonic() + timeout
    while len(items) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(items)} of {count} items arrived")
        assistant.exercise_event_loop()


def wait_settled(assistant, items, at, behind=1, timeout=20):
    """Run the loop until every item the task made has arrived.

    ``at`` holds the index of the last item the task made; ``behind`` is
    how many items more than that index have arrived once it is blocked
    (1 for an iteration, which blocks after sending; 0 for progress, which
    blocks before).
    """
    deadline = time.monotonic() + timeout
    while True:
        last = pt.read(at)
        if last is not None and len(items) == last + behind:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"made up to {last}, {len(items)} arrived")
        assistant.exercise_event_loop()


def assert_stays(assistant, context, future, items, at, behind=1):
    """A paused task stops: nothing made, nothing delivered, over a window.

    The task may have gone past its pause point just before it was paused:
    it makes at most one more item, then stops; so the second look must
    find it still.
    """
    until_delivered(assistant, context, future)
    for _ in range(2):
        last = wait_settled(assistant, items, at, behind)
        hold(assistant)
        if pt.read(at) == last and len(items) == last + behind:
            return
    raise AssertionError(f"the paused task went on: {pt.read(at)} made")


def until_delivered(assistant, context, future, paused=True, values=0, timeout=20):
    """On Dask, wait until every worker has the future's controls.

    Controls reach Dask workers asynchronously (a ``client.run`` a few
    milliseconds after the call); a task that starts meanwhile would make
    an item first.  Threads and processes apply a control at the task's
    next pause point after the call, so there is nothing to wait for.
    """
    if type(context).__name__ != "DaskContext":
        return
    key = future._cancel.flag.key
    deadline = time.monotonic() + timeout
    while True:
        states = context.client.run(pt.dask_gate_state, key)
        if all(state == (paused, values) for state in states.values()):
            return
        assert time.monotonic() < deadline, states
        assistant.exercise_event_loop()


def one_busy_worker(make_executor, context):
    """An executor of one worker, kept busy until the event returned is set:
    a task submitted meanwhile has surely not started."""
    executor = make_executor(max_workers=1)
    event = context.event()
    submit_call(executor, event.wait, 30)
    return executor, event


# Iteration ------------------------------------------------------------------


def test_pause_while_running_resume_then_cancel(executor, context, assistant, tmp_path):
    at, closed = str(tmp_path / "at"), str(tmp_path / "closed")
    future = submit_iteration(executor, pt.ticks, at, closed)
    items = collect(future)
    paused = collect(future, "paused")
    wait_items(assistant, future, items, 3)
    assert future.pause() is True
    assert future.paused is True and paused == [True]
    assert future.pause() is False  # already paused
    assert_stays(assistant, context, future, items, at)
    count = len(items)
    assert future.resume() is True
    assert future.paused is False and paused == [True, False]
    assert future.resume() is False
    wait_items(assistant, future, items, count + 3)
    assert future.cancel() is True
    wait_done(assistant, future)
    assert future.state == CANCELLED
    assert items == list(range(len(items)))  # nothing lost, nothing twice
    assert pt.read(closed) == 1


def test_pause_before_start(make_executor, context, assistant, tmp_path):
    executor, busy = one_busy_worker(make_executor, context)
    started = str(tmp_path / "started")
    future = submit_iteration(executor, pt.count_from_start, started, 5)
    assert future.state == WAITING
    assert future.pause() is True
    items = collect(future)
    until_delivered(assistant, context, future)
    busy.set()
    assistant.run_until(future, "state", lambda f: f.state == EXECUTING)
    hold(assistant)
    assert pt.read(started) is None  # the generator never ran
    assert items == []
    assert future.resume() is True
    wait_done(assistant, future)
    assert future.state == COMPLETED
    assert items == [0, 1, 2, 3, 4]
    assert future.paused is False


def test_pause_and_resume_between_items_repeatedly(executor, assistant, tmp_path):
    at, closed = str(tmp_path / "at"), str(tmp_path / "closed")
    future = submit_iteration(executor, pt.ticks, at, closed)
    items = collect(future)
    for _ in range(3):
        wait_items(assistant, future, items, len(items) + 2)
        assert future.pause() is True
        wait_settled(assistant, items, at)
        assert future.resume() is True
    wait_items(assistant, future, items, len(items) + 2)
    future.cancel()
    wait_done(assistant, future)
    assert items == list(range(len(items)))


def test_cancel_while_paused_wakes_and_closes_the_generator(executor, assistant, tmp_path):
    at, closed = str(tmp_path / "at"), str(tmp_path / "closed")
    future = submit_iteration(executor, pt.ticks, at, closed)
    items = collect(future)
    paused = collect(future, "paused")
    wait_items(assistant, future, items, 2)
    future.pause()
    wait_settled(assistant, items, at)
    assert future.cancel() is True
    assert future.paused is False and paused == [True, False]  # observers told
    wait_done(assistant, future, timeout=10)
    assert future.state == CANCELLED
    wait_file(assistant, closed)


def test_cancel_while_paused_before_start(make_executor, context, assistant, tmp_path):
    executor, busy = one_busy_worker(make_executor, context)
    started = str(tmp_path / "started")
    future = submit_iteration(executor, pt.count_from_start, started, 5)
    future.pause()
    until_delivered(assistant, context, future)
    busy.set()
    assistant.run_until(future, "state", lambda f: f.state == EXECUTING)
    future.cancel()
    wait_done(assistant, future)
    assert future.state == CANCELLED
    assert pt.read(started) is None


def test_executor_stop_wakes_a_paused_task(executor, assistant, tmp_path):
    at, closed = str(tmp_path / "at"), str(tmp_path / "closed")
    future = submit_iteration(executor, pt.ticks, at, closed)
    items = collect(future)
    wait_items(assistant, future, items, 2)
    future.pause()
    wait_settled(assistant, items, at)
    executor.stop()
    wait_done(assistant, future)
    assert future.state == CANCELLED


def test_done_future_cannot_pause_resume_or_send(executor, assistant):
    future = submit_iteration(executor, range, 3)
    wait_done(assistant, future)
    assert future.pause() is False
    assert future.resume() is False
    assert future.send(1) is False
    assert future.paused is False


def test_sent_values_arrive_in_order_none_included(make_executor, context, assistant):
    executor, busy = one_busy_worker(make_executor, context)
    future = submit_iteration(executor, pt.receive, 7)
    # Queued before the generator starts, sent while paused and not.
    for value in ("a", None):
        assert future.send(value) is True
    future.pause()
    until_delivered(assistant, context, future, values=2)
    busy.set()
    assistant.run_until(future, "state", lambda f: f.state == EXECUTING)
    for value in ("b", {"c": 3}, 0):
        assert future.send(value) is True
    future.resume()
    items = collect(future)
    wait_done(assistant, future)
    assert future.state == COMPLETED
    assert items == list(range(7))
    # The start takes no value: the first goes to the first yield.
    assert future.result == ["a", None, "b", {"c": 3}, 0, None, None]


def test_send_while_running_echoes_each_value_once(executor, assistant):
    future = submit_iteration(executor, pt.receive_until, "end")
    items = collect(future)
    wait_items(assistant, future, items, 1)
    sent = list(range(20)) + [None, "end"]
    for value in sent:
        future.send(value)
    wait_done(assistant, future)
    assert future.state == COMPLETED and future.result == "ended"
    echoed = [item for item in items[1:] if item is not None]
    assert echoed == list(range(20))


def test_values_left_when_the_generator_ends_are_reported(
    make_executor, context, assistant, caplog
):
    executor, busy = one_busy_worker(make_executor, context)
    future = submit_iteration(executor, pt.receive, 2)
    for value in range(5):
        future.send(value)
    until_delivered(assistant, context, future, paused=False, values=5)
    busy.set()
    with caplog.at_level(logging.WARNING, logger="offload.futures"):
        wait_done(assistant, future)
    assert future.result == [0, 1]
    assert "3 of the 5 values sent" in caplog.text


def test_send_to_a_plain_iterable_fails_clearly(executor, assistant):
    future = submit_iteration(executor, range, 1000000)
    future.pause()
    future.send("x")
    future.resume()
    wait_done(assistant, future)
    assert future.state == FAILED
    assert future.exception[0] == "TypeError"
    assert "only a generator can receive values" in future.exception[1]


# Progress -------------------------------------------------------------------


def test_progress_pause_resume_cancel(executor, context, assistant, tmp_path):
    at = str(tmp_path / "at")
    future = submit_progress(executor, pt.report_ticks, at)
    reports = collect(future, "progress")
    wait_items(assistant, future, reports, 3)
    assert future.pause() is True
    # Blocked in progress(last), before sending it.
    assert_stays(assistant, context, future, reports, at, behind=0)
    last = len(reports)
    assert future.resume() is True
    wait_items(assistant, future, reports, last + 3)
    future.pause()
    assert future.cancel() is True
    wait_done(assistant, future)
    assert future.state == CANCELLED
    assert reports == list(range(len(reports)))


def test_progress_pause_before_start(make_executor, context, assistant, tmp_path):
    executor, busy = one_busy_worker(make_executor, context)
    started = str(tmp_path / "started")
    future = submit_progress(executor, pt.report_from_start, started, 4)
    future.pause()
    reports = collect(future, "progress")
    until_delivered(assistant, context, future)
    busy.set()
    wait_file(assistant, started)  # the callable starts...
    hold(assistant)
    assert reports == []  # ...and stops at its first report
    assert future.resume() is True
    wait_done(assistant, future)
    assert future.state == COMPLETED and future.result == 4
    assert reports == [0, 1, 2, 3]


def test_a_value_that_cannot_be_pickled_is_refused_by_send(executor, assistant, context):
    import threading

    import pytest

    if type(context).__name__ == "MultithreadingContext":
        pytest.skip("nothing is pickled on threads: any value goes")
    future = submit_iteration(executor, pt.receive, 3)

    try:
        future.send(threading.Lock())
    except Exception as error:  # noqa: BLE001 - pickle's own error types vary
        assert "lock" in str(error).lower()
    else:
        raise AssertionError("send() accepted a lock")
    wait_done(assistant, future)
    assert future.result == [None, None, None]  # nothing was queued


def test_a_context_whose_flags_cannot_pause_says_so(assistant):
    import threading

    import pytest

    from offload.api import MultithreadingContext, TraitsExecutor

    class EventFlagContext(MultithreadingContext):
        """A context whose cancel flags are plain events (as Traits
        Futures' contexts made them)."""

        def cancel_flag(self):
            return threading.Event()

    with EventFlagContext() as context:
        executor = TraitsExecutor(context=context, event_loop=assistant.event_loop)
        try:
            future = submit_iteration(executor, range, 3)
            with pytest.raises(RuntimeError, match="has no pause_gate"):
                future.pause()
            with pytest.raises(RuntimeError, match="Event"):
                future.send(1)
            assert future.paused is False
            items = collect(future)
            wait_done(assistant, future)
            assert items == [0, 1, 2]  # its tasks run as before
        finally:
            executor.shutdown(timeout=20)


# Steps ----------------------------------------------------------------------


def test_steps_pause_resume_cancel(executor, context, assistant, tmp_path):
    from offload.api import submit_steps

    at = str(tmp_path / "at")
    future = submit_steps(executor, 0, "start", pt.step_ticks, at)
    assistant.run_until(future, "message", lambda f: f.message.startswith("step"))
    assert future.pause() is True
    until_delivered(assistant, context, future)
    # Stopped in step(n), before step n starts: the message (which comes
    # at most 1/max_rate s late, always) settles on step n - 1.
    deadline = time.monotonic() + 20
    for _ in range(2):
        while True:
            last = pt.read(at)
            if future.message == f"step {last - 1}":
                break
            assert time.monotonic() < deadline, (last, future.message)
            assistant.exercise_event_loop()
        hold(assistant)
        if pt.read(at) == last:
            break
    assert pt.read(at) == last and future.message == f"step {last - 1}"
    assert future.resume() is True
    assistant.run_until(
        future, "message", lambda f: int(f.message.split()[1]) >= last + 2
    )
    future.pause()
    assert future.cancel() is True
    wait_done(assistant, future)
    assert future.state == CANCELLED


def test_setting_the_cancel_flag_alone_wakes_a_paused_task(
    executor, context, assistant, tmp_path
):
    """What a timeout or the executor may do without ``future.cancel()``:
    set the task's cancel flag.  The paused task wakes and ends (here,
    with the future never told: it returns, and the future COMPLETES)."""
    at, closed = str(tmp_path / "at"), str(tmp_path / "closed")
    future = submit_iteration(executor, pt.ticks, at, closed)
    items = collect(future)
    wait_items(assistant, future, items, 2)
    future.pause()
    assert_stays(assistant, context, future, items, at)
    future._cancel.flag.set()
    wait_done(assistant, future)
    assert future.state == COMPLETED and future.paused is False
    assert pt.read(closed) == 1


def test_a_task_that_times_out_while_paused_fails_with_task_timed_out(
    executor, assistant, tmp_path
):
    at, closed = str(tmp_path / "at"), str(tmp_path / "closed")
    future = submit_iteration(executor.options(timeout=2.0), pt.ticks, at, closed)
    items = collect(future)
    wait_items(assistant, future, items, 2)
    assert future.pause() is True
    # Paused well before its limit: the limit still ends it, wherever it waits.
    wait_done(assistant, future, timeout=20)
    assert future.state == FAILED
    assert isinstance(future.exception_object, TaskTimedOut)
    assert "TaskTimedOut" in future.exception[0]
    assert future.paused is False


# What a pausable future costs -------------------------------------------------


def tracked_objects():
    gc.collect()
    return len(gc.get_objects())


@pytest.mark.parametrize("matrix", [("thread", "asyncio")], indirect=True)
def test_a_pausable_future_costs_no_more_objects_than_a_call(
    make_executor, assistant, tmp_path
):
    # Progress, iteration and steps futures can pause; that must not cost
    # each of them Traits observers (``Property(observe=...)`` built ~27
    # objects per future, and ~50 us a submit).  One worker, blocked: the
    # tasks send nothing meanwhile.
    executor = make_executor(max_workers=1)
    release, started = str(tmp_path / "release"), str(tmp_path / "started")
    blocker = submit_call(executor, tf.wait_for_file, release)
    submits = {
        "call": lambda: submit_call(executor, tf.wait_for_file, release),
        "progress": lambda: submit_progress(executor, tf.wait_for_file_then_report, release),
        "iteration": lambda: submit_iteration(executor, pt.count_from_start, started, 1),
        "steps": lambda: submit_steps(executor, 1, "wait", st.wait_for_file_in_a_step, release),
    }
    per_future, futures = {}, [blocker]
    for kind, submit in submits.items():
        before = tracked_objects()
        futures += [submit() for _ in range(500)]
        per_future[kind] = (tracked_objects() - before) / 500
    tf.touch(release)
    for future in futures:
        wait_done(assistant, future)
    for kind in ("progress", "iteration", "steps"):
        assert per_future[kind] <= per_future["call"] + 1, per_future
