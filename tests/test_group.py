"""FutureGroup: counts, fraction, cancel, as_completed, wait, await.

The first part drives futures by hand (``future.receive``), on one asyncio
loop, to check exactly when the group notifies; the second runs real tasks
on every context x event loop.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

import steps_tasks as st
import task_functions as tf
from conftest import wait_file
from offload._routing.protocol import ABANDONED, RAISED, RETURNED, STARTED
from offload.api import (
    CANCELLED,
    COMPLETED,
    FAILED,
    AsyncioEventLoop,
    CallFuture,
    FutureGroup,
    ProgressFuture,
    StepsFuture,
    submit_call,
    submit_progress,
    submit_steps,
)
from offload.testing.pytest_plugin import OffloadAssistant

# By hand ---------------------------------------------------------------------


@pytest.fixture
def loop():
    event_loop = AsyncioEventLoop()
    assistant = OffloadAssistant(event_loop)
    yield assistant
    assistant.dispose()
    event_loop.close()


def finish(future, value=None):
    future.receive((STARTED, None))
    return future.receive((RETURNED, value))


def fail(future):
    future.receive((STARTED, None))
    future.receive((RAISED, (("ValueError", "bad", "tb"), None)))


def record(obj, names):
    changes = []
    obj.observe(lambda event: changes.append((event.name, event.old, event.new)), names)
    return changes


def test_counts_change_at_once_and_notify_once_per_batch(loop):
    futures = [CallFuture() for _ in range(100)]
    group = FutureGroup(futures=futures, event_loop=loop.event_loop)
    changes = record(group, "done_count,done,fraction")
    for future in futures:
        finish(future)
    # Read now: the counts are already right ...
    assert (group.done_count, group.done, group.fraction) == (100, True, 1.0)
    # ... and observers hear of it once the loop turns, once for the batch.
    assert changes == []
    loop.exercise_event_loop()
    assert changes == [
        ("done_count", 0, 100),
        ("fraction", 0.0, 1.0),
        ("done", False, True),
    ]


def test_failed_and_cancelled_are_counted(loop):
    ok, bad, stopped, running = (CallFuture() for _ in range(4))
    group = FutureGroup(futures=[ok, bad, stopped, running], event_loop=loop.event_loop)
    finish(ok)
    fail(bad)
    stopped.cancel()
    stopped.receive((ABANDONED, None))  # the task's end, after the cancel
    running.receive((STARTED, None))
    loop.exercise_event_loop()
    assert (group.total, group.done_count, group.failed_count, group.cancelled_count) == (
        4, 3, 1, 1,
    )
    assert not group.done
    assert group.fraction == 0.75


def test_fraction_uses_steps_and_numeric_progress(loop):
    from offload._futures.steps import BackgroundSteps

    steps = BackgroundSteps(10, "start", st.steps).future(lambda: None)
    pair, share, text = ProgressFuture(), ProgressFuture(), ProgressFuture()
    group = FutureGroup(futures=[steps, pair, share, text], event_loop=loop.event_loop)
    for future in (steps, pair, share, text):
        future.receive((STARTED, None))
    steps.receive(("steps", (5, "half", 1.0)))
    pair.receive(("progress", (3, 4)))
    share.receive(("progress", 0.25))
    text.receive(("progress", "not a number"))
    loop.exercise_event_loop()
    assert group.fraction == pytest.approx((0.5 + 0.75 + 0.25 + 0.0) / 4)
    text.receive(("progress", 7))  # a bare count: no fraction in it
    finish(steps)
    loop.exercise_event_loop()
    assert group.fraction == pytest.approx((1.0 + 0.75 + 0.25 + 0.0) / 4)
    assert isinstance(steps, StepsFuture)


def test_update_callbacks_get_the_future_and_each_update_after_its_notifications():
    # How a group follows steps and progress futures without a Traits
    # notifier per future: one plain callable, given the future (and the
    # report), after the update's own notifications.
    from offload._futures.steps import BackgroundSteps

    progress, steps = ProgressFuture(), BackgroundSteps(10, "start", st.steps).future(lambda: None)
    seen = []
    progress.observe(lambda event: seen.append(("observer", event.new)), "progress")
    steps.observe(lambda event: seen.append(("observer", event.new)), "complete")

    def callback(future, *report):
        seen.append(("callback", future, *report))

    def second(future, *report):
        seen.append(("second", future, *report))

    for future in (progress, steps):
        future.add_update_callback(callback)
        future.receive((STARTED, None))
    progress.receive(("progress", (1, 4)))
    steps.receive(("steps", (5, "half", 1.0)))
    for future in (progress, steps):
        future.add_update_callback(second)
    progress.receive(("progress", "two"))
    steps.receive(("steps", (6, "more", 1.0)))
    assert seen == [
        ("observer", (1, 4)), ("callback", progress, (1, 4)),
        ("observer", 5), ("callback", steps),
        ("observer", "two"), ("callback", progress, "two"), ("second", progress, "two"),
        ("observer", 6), ("callback", steps), ("second", steps),
    ]


def test_a_steps_future_added_midway_counts_its_progress_so_far(executor, assistant, tmp_path):
    release = str(tmp_path / "release")
    steps = submit_steps(executor, 4, "start", st.timed_steps, 4, 0.0, release)
    try:
        assistant.run_until(steps, "complete", lambda f: f.complete == 3, timeout=20)
        group = FutureGroup()
        group.add(steps)
        assert group.fraction == 0.75
    finally:
        tf.touch(release)
    assert group.wait(timeout=20) and group.fraction == 1.0


def test_add_to_a_done_group_makes_it_not_done(loop):
    first, second = CallFuture(), CallFuture()
    group = FutureGroup(futures=[first], event_loop=loop.event_loop)
    finish(first)
    loop.exercise_event_loop()
    assert group.done
    changes = record(group, "total,done")
    group.add(second)
    loop.exercise_event_loop()
    assert changes == [("total", 1, 2), ("done", True, False)]
    assert group.futures == [first, second]
    finish(second)
    loop.exercise_event_loop()
    assert group.done and group.done_count == 2


def test_a_future_done_when_added_counts_at_once(loop):
    future = CallFuture()
    finish(future, 3)
    group = FutureGroup(futures=[future])
    assert (group.total, group.done_count, group.done, group.fraction) == (1, 1, True, 1.0)
    assert list(group.as_completed()) == [future]
    assert group.wait(timeout=0) is True


def test_empty_group_is_done():
    group = FutureGroup()
    assert (group.total, group.done_count, group.done, group.fraction) == (0, 0, True, 1.0)
    assert list(group.as_completed()) == []
    assert group.wait() is True


def test_bad_additions_are_refused(loop):
    future = CallFuture()
    group = FutureGroup(futures=[future], event_loop=loop.event_loop)
    with pytest.raises(ValueError, match="already"):
        group.add(future)
    with pytest.raises(TypeError, match="future"):
        group.add(42)
    with pytest.raises(TypeError, match="event_loop"):
        FutureGroup(event_loop="asyncio")
    assert group.total == 1


def test_counts_are_read_only(loop):
    group = FutureGroup(event_loop=loop.event_loop)
    for name in ("total", "done_count", "failed_count", "cancelled_count", "done",
                 "fraction", "futures"):
        with pytest.raises(Exception, match="read only"):
            setattr(group, name, getattr(group, name))


def test_waiting_without_an_event_loop_says_what_to_pass():
    future = CallFuture()  # not from an executor: no event loop to find
    group = FutureGroup(futures=[future])
    with pytest.raises(RuntimeError, match="event_loop="):
        group.wait(timeout=1)


# Real tasks, every context x event loop -----------------------------------------


def test_group_of_real_tasks_counts_outcomes(executor, assistant, tmp_path):
    release = str(tmp_path / "release")
    ok = submit_call(executor, tf.square, 3)
    bad = submit_call(executor, tf.fail, "boom")
    blocked = submit_call(executor, tf.wait_for_file, release)
    group = FutureGroup(futures=[ok, bad, blocked])
    assistant.run_until(group, "done_count", lambda g: g.done_count == 2, timeout=20)
    assert not group.done and group.fraction == pytest.approx(2 / 3)
    tf.touch(release)
    assistant.run_until(group, "done", lambda g: g.done, timeout=20)
    assert (group.done_count, group.failed_count, group.cancelled_count) == (3, 1, 0)


def test_cancel_cancels_every_unfinished_future(executor, assistant, tmp_path):
    started = str(tmp_path / "started")
    running = submit_progress(executor, tf.report_until_cancelled, started)
    queued = [submit_call(executor, tf.square, i) for i in range(3)]
    wait_file(assistant, started)
    group = FutureGroup(futures=[running, *queued])
    assert group.cancel() >= 1
    assistant.run_until(group, "done", lambda g: g.done, timeout=20)
    assert running.state == CANCELLED
    assert group.cancelled_count + group.done_count - group.cancelled_count == 4
    assert group.cancelled_count >= 1
    assert group.cancel() == 0


def test_as_completed_yields_in_completion_order(executor, assistant, tmp_path):
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    slow = submit_call(executor, st.wait_then_return, second, "slow")
    quick = submit_call(executor, st.wait_then_return, first, "quick")
    group = FutureGroup(futures=[slow, quick])
    seen = []
    tf.touch(first)
    for future in group.as_completed(timeout=20):
        seen.append(future.result)
        if future is quick:
            tf.touch(second)
    assert seen == ["quick", "slow"]


def test_as_completed_and_wait_time_out(executor, assistant, tmp_path):
    release = str(tmp_path / "release")
    blocked = submit_call(executor, tf.wait_for_file, release)
    group = FutureGroup(futures=[blocked])
    try:
        assert group.wait(timeout=0.2) is False
        with pytest.raises(TimeoutError, match="1 of 1"):
            for _ in group.as_completed(timeout=0.2):
                pass
    finally:
        tf.touch(release)
    assert group.wait(timeout=20) is True
    assert blocked.state == COMPLETED


def test_group_follows_steps_futures(executor, assistant):
    futures = [submit_steps(executor, 100, "start", st.flood, 100) for _ in range(3)]
    group = FutureGroup(futures=futures)
    fractions = record(group, "fraction")
    assert group.wait(timeout=20)
    assert group.fraction == 1.0
    assert [new for _, _, new in fractions] == sorted(new for _, _, new in fractions)


def test_fraction_follows_reports_of_running_tasks_with_no_end_meanwhile(
    executor, assistant, tmp_path
):
    # The group notifies what reports changed at the end of the batch that
    # brought them, though no future of the group ended in it.
    release = str(tmp_path / "release")
    futures = [
        submit_progress(executor, tf.report_then_wait, (1, 4), release),
        submit_steps(executor, 4, "start", st.timed_steps, 4, 0.0, release),
        submit_call(executor, tf.wait_for_file, release),
    ]
    group = FutureGroup(futures=futures)
    fractions = record(group, "fraction")
    try:
        # Progress 1/4, steps 3 of 4 (it waits before its last step), as
        # notified (the condition reads no count: a read would publish).
        assistant.run_until(
            group, "fraction",
            lambda g: bool(fractions) and fractions[-1][2] == pytest.approx((0.25 + 0.75) / 3),
            timeout=20,
        )
        assert group.done_count == 0
    finally:
        tf.touch(release)
    assert group.wait(timeout=20)
    assert group.fraction == 1.0 and fractions[-1][2] == 1.0


def test_shutdown_in_an_observer_of_the_group_does_not_hang(make_executor, assistant, tmp_path):
    # The group notifies at the end of the executor's batch, inside its
    # delivery: an observer there may shut the executor down, and a
    # progress report (no end) may be what it reacts to.
    executor = make_executor()
    release = str(tmp_path / "release")
    reported = submit_progress(executor, tf.report_then_wait, (1, 2), release)
    waiting = submit_call(executor, tf.wait_for_file, release)
    group = FutureGroup(futures=[reported, waiting])
    calls, outcome = [], []

    def shut_down(event):
        # Once: shutdown delivers what is left, so this observer is called
        # again from inside it.
        if event.new >= 0.25 and not calls:
            calls.append(event.new)
            tf.touch(release)  # else shutdown would wait for the tasks
            outcome.append(executor.shutdown(timeout=20))

    group.observe(shut_down, "fraction")
    try:
        assistant.run_until(executor, "stopped", lambda e: e.stopped, timeout=30)
    finally:
        tf.touch(release)
    assert outcome == [None] and executor.stopped
    assert group.done and group.done_count == 2


def test_a_failed_future_is_counted_as_failed(executor, assistant):
    group = FutureGroup(futures=[submit_call(executor, tf.fail)])
    assert group.wait(timeout=20)
    assert group.failed_count == 1 and group.futures[0].state == FAILED


@pytest.mark.parametrize("matrix", [("thread", "asyncio")], indirect=True)
def test_await_group_in_asyncio(executor, assistant):
    futures = [submit_call(executor, tf.square, i) for i in range(5)]
    group = FutureGroup(futures=futures)

    async def main():
        return await group

    loop = assistant.event_loop.event_loop
    done = loop.run_until_complete(asyncio.wait_for(main(), 20))
    assert done == futures
    assert [f.result for f in done] == [0, 1, 4, 9, 16]


@pytest.mark.parametrize("matrix", [("thread", "asyncio")], indirect=True)
def test_wait_inside_a_running_loop_says_to_await(executor, assistant, tmp_path):
    release = str(tmp_path / "release")
    group = FutureGroup(futures=[submit_call(executor, tf.wait_for_file, release)])

    async def main():
        with pytest.raises(RuntimeError, match="await"):
            group.wait(timeout=1)

    try:
        assistant.event_loop.event_loop.run_until_complete(main())
    finally:
        tf.touch(release)


# Many futures, cheaply (issue 33: a group of 10,000 must not slow delivery) ---


def tracked_objects():
    gc.collect()
    return len(gc.get_objects())


@pytest.mark.parametrize("kind", ["call", "progress", "steps"])
@pytest.mark.parametrize("matrix", [("thread", "asyncio")], indirect=True)
def test_a_group_keeps_no_object_per_pending_future(
    make_executor, assistant, tmp_path, kind
):
    # Objects the garbage collector tracks cost every full collection a walk;
    # a group of thousands of running futures must not add one per future.
    # Two workers, blocked: the tasks send no messages (objects) meanwhile.
    executor = make_executor(max_workers=2)
    release = str(tmp_path / "release")
    submit = {
        "call": lambda: submit_call(executor, tf.wait_for_file, release),
        "progress": lambda: submit_progress(executor, tf.wait_for_file_then_report, release),
        "steps": lambda: submit_steps(executor, 1, "wait", st.wait_for_file_in_a_step, release),
    }[kind]
    futures = [submit() for _ in range(2_000)]
    before = tracked_objects()
    group = FutureGroup(futures=futures)
    grown = tracked_objects() - before
    tf.touch(release)
    assert group.total == 2_000 and not group.done  # nothing delivered yet
    assert grown < 100, f"{grown} more objects for a group of 2,000 pending futures"
    assert group.wait(timeout=30)
    assert group.done_count == 2_000


@pytest.mark.parametrize("matrix", [("thread", "asyncio")], indirect=True)
def test_a_group_counts_futures_of_several_executors(executor, make_executor, assistant):
    other = make_executor()
    futures = [submit_call(executor, tf.square, 2), submit_call(other, tf.fail, "boom"),
               submit_call(other, tf.square, 3)]
    group = FutureGroup(futures=futures)
    assert group.wait(timeout=20)
    assert (group.done_count, group.failed_count) == (3, 1)
    late = submit_call(executor, tf.square, 4)
    group.add(late)
    assert group.wait(timeout=20)
    assert (group.total, group.done_count) == (4, 4) and late.result == 16


@pytest.mark.parametrize("matrix", [("thread", "asyncio")], indirect=True)
def test_counts_read_by_an_observer_of_a_future_include_it(executor, assistant):
    futures = [submit_call(executor, tf.square, i) for i in range(20)]
    group = FutureGroup(futures=futures)
    seen = []
    for future in futures:
        future.observe(lambda event: seen.append(group.done_count), "done")
    assert group.wait(timeout=20)
    # Each observer saw its own future counted, and each count once.
    assert sorted(seen) == list(range(1, 21))


@pytest.mark.parametrize("matrix", [("thread", "asyncio")], indirect=True)
def test_a_future_added_as_it_ends_is_counted_once(executor, assistant, tmp_path):
    release = str(tmp_path / "release")
    blocked = submit_call(executor, tf.wait_for_file, release)
    late = submit_call(executor, tf.square, 5)
    group = FutureGroup(futures=[blocked])

    def add_when_completed(event):
        if event.new == COMPLETED:
            group.add(late)  # done already: its state changes before done

    late.observe(add_when_completed, "state")
    assistant.run_until(late, "done", lambda future: future.done, timeout=20)
    tf.touch(release)
    assert group.wait(timeout=20)
    assert (group.total, group.done_count) == (2, 2)
    assert list(group.as_completed()) == [late, blocked]


@pytest.mark.parametrize("matrix", [("thread", "asyncio")], indirect=True)
def test_a_group_dropped_while_its_futures_run_goes_quietly(
    executor, assistant, tmp_path, caplog
):
    release = str(tmp_path / "release")
    futures = [submit_call(executor, tf.wait_for_file, release) for _ in range(3)]
    group = FutureGroup(futures=futures)
    assistant.exercise_event_loop()  # the group's notification after add
    gone = weakref.ref(group)
    del group
    gc.collect()
    assert gone() is None  # nothing of the executor keeps it
    tf.touch(release)
    for future in futures:
        assistant.run_until(future, "done", lambda future: future.done, timeout=20)
    assert [future.state for future in futures] == [COMPLETED] * 3
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


@pytest.mark.parametrize("matrix", [("thread", "asyncio")], indirect=True)
def test_a_group_mixes_futures_of_an_executor_and_made_by_hand(executor, assistant):
    by_hand = CallFuture()
    futures = [submit_call(executor, tf.square, i) for i in range(3)]
    group = FutureGroup(futures=[futures[0], by_hand, *futures[1:]])
    assistant.run_until(group, "done_count", lambda g: g.done_count == 3, timeout=20)
    assert not group.done
    fail(by_hand)
    assert (group.done_count, group.failed_count, group.done) == (4, 1, True)
    assert group.wait(timeout=20)
