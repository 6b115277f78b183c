"""Behaviour suite for submit_steps: runs on every context x event loop."""

from __future__ import annotations

import threading

import pytest

import steps_tasks as st
import task_functions as tf
from conftest import StateRecorder, wait_done, wait_file
from offload.api import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXECUTING,
    FAILED,
    WAITING,
    IStepsReporter,
    StepsFuture,
    submit_steps,
)


def record(future, name):
    values = []
    future.observe(lambda event: values.append(event.new), name)
    return values


def unlimited(executor, total, message, callable, *args, **kwargs):
    """submit_steps without the rate limit (every update delivered)."""
    from offload._futures.steps import BackgroundSteps

    return executor.submit(
        BackgroundSteps(total, message, callable, args, kwargs, max_rate=None)
    )


def test_steps_then_stop_show_the_final_state(executor, assistant):
    future = submit_steps(executor, 5, "starting", st.steps, 5)
    assert isinstance(future, StepsFuture)
    wait_done(assistant, future)
    assert future.state == COMPLETED and future.result == 5
    assert (future.total, future.complete, future.message) == (5, 5, "all done")
    assert future.fraction == 1.0


def test_before_it_runs_the_future_shows_total_and_message(executor, assistant):
    future = submit_steps(executor, 10, "queued", st.steps, 10)
    # Nothing delivered yet: this is what submit_steps was given.
    assert future.state == WAITING
    assert (future.total, future.complete, future.message) == (10, 0, "queued")
    assert future.fraction == 0.0
    assert future.remaining_time is None
    wait_done(assistant, future)


def test_a_step_starts_and_the_next_completes_it(executor, assistant):
    future = unlimited(executor, 6, "start", st.sized_steps, [1, 2, 3])
    completes = record(future, "complete")
    messages = record(future, "message")
    fractions = record(future, "fraction")
    wait_done(assistant, future)
    assert completes == [1, 3, 6]
    assert messages == ["part 0", "part 1", "part 2", "finished"]
    assert fractions == [1 / 6, 3 / 6, 1.0]
    assert future.result == "ok"


def test_without_stop_the_last_step_stays_pending(executor, assistant):
    future = submit_steps(executor, 3, "start", st.steps_no_stop, 3)
    wait_done(assistant, future)
    assert future.state == COMPLETED
    assert (future.complete, future.message) == (2, "step 2")
    assert future.fraction == pytest.approx(2 / 3)


def test_traits_change_on_the_main_thread(executor, assistant):
    threads = set()
    future = submit_steps(executor, 50, "start", st.steps, 50)
    future.observe(lambda event: threads.add(threading.current_thread()), "complete,message")
    wait_done(assistant, future)
    assert threads == {threading.main_thread()}


def test_kwargs_pass_through_with_reporter(executor, assistant):
    future = submit_steps(executor, 1, "start", st.steps_kwargs, a=1, executor=2, total=3)
    wait_done(assistant, future)
    assert future.result == {"a": 1, "executor": 2, "total": 3}


def test_caller_may_not_pass_reporter(executor):
    with pytest.raises(TypeError, match="reporter"):
        submit_steps(executor, 3, "start", st.steps, 3, reporter=None)
    assert executor.running


@pytest.mark.parametrize(
    ("total", "message", "error", "match"),
    [
        (-1, "m", ValueError, "total"),
        (2.5, "m", TypeError, "total"),
        (True, "m", TypeError, "total"),
        (3, None, TypeError, "message"),
    ],
)
def test_bad_total_or_message_is_refused_at_submit(executor, total, message, error, match):
    with pytest.raises(error, match=match):
        submit_steps(executor, total, message, st.steps, 3)


def test_not_a_callable_is_refused(executor):
    with pytest.raises(TypeError, match="callable"):
        submit_steps(executor, 3, "start", 42)


@pytest.mark.parametrize(("kind", "match"), [("size", "size"), ("message", "message"),
                                             ("stop", "message")])
def test_bad_step_fails_the_task_with_a_clear_message(executor, assistant, kind, match):
    future = submit_steps(executor, 3, "start", st.bad_step, kind)
    wait_done(assistant, future)
    assert future.state == FAILED
    assert match in future.exception[1]


def test_failure_after_steps_keeps_the_last_step(executor, assistant):
    future = submit_steps(executor, 10, "start", st.steps_then_fail, 4)
    wait_done(assistant, future)
    assert future.state == FAILED and future.exception[1] == "after steps"
    # The last step before the failure was delivered, coalesced or not.
    assert (future.complete, future.message) == (3, "step 3")


def test_cancel_makes_step_raise_and_ends_cancelled(executor, assistant, tmp_path):
    started = str(tmp_path / "started")
    future = submit_steps(executor, 100, "start", st.steps_until_cancelled, started)
    recorder = StateRecorder(future)
    wait_file(assistant, started)
    assistant.run_until(future, "state", lambda f: f.state == EXECUTING)
    assert future.cancel() is True
    wait_done(assistant, future)
    assert future.state == CANCELLED
    assert recorder.states == [WAITING, EXECUTING, CANCELLING, CANCELLED]


def test_stop_raises_once_cancelled(executor, assistant, tmp_path):
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    future = submit_steps(executor, 2, "start", st.stop_after_cancel, started, release)
    wait_file(assistant, started)
    assistant.run_until(future, "state", lambda f: f.state == EXECUTING)
    future.cancel()
    tf.touch(release)
    wait_done(assistant, future)
    assert future.state == CANCELLED


def test_updates_are_coalesced_to_25_a_second_and_the_last_is_kept(executor, assistant):
    n = 20_000
    future = submit_steps(executor, n, "start", st.flood, n)
    messages = record(future, "message")
    wait_done(assistant, future)
    seconds = future.result
    # A leading update, one per 1/25 s after it, and the last one.
    assert 1 <= len(messages) <= int(seconds * 25) + 3, (len(messages), seconds)
    assert messages[-1] == f"{n} items"
    assert (future.complete, future.fraction) == (n, 1.0)


def test_without_a_rate_limit_every_update_is_delivered(executor, assistant):
    n = 500
    future = unlimited(executor, n, "start", st.flood, n)
    messages = record(future, "message")
    wait_done(assistant, future)
    assert messages == [f"item {i}" for i in range(n)] + [f"{n} items"]


def test_a_held_update_is_sent_while_the_next_step_runs(executor, assistant, tmp_path):
    # "slow" comes right after "quick", inside the rate limit's interval; it
    # must still show while its step runs, not only when the task moves on.
    release = str(tmp_path / "release")
    future = submit_steps(executor, 2, "start", st.fast_then_slow, release)
    try:
        assistant.run_until(future, "message", lambda f: f.message == "slow", timeout=20)
        assert future.state == EXECUTING and future.complete == 1
    finally:
        tf.touch(release)
    wait_done(assistant, future)
    assert future.message == "over"


def test_remaining_time_is_none_until_a_step_completes_then_an_estimate(
    executor, assistant, tmp_path
):
    release = str(tmp_path / "release")
    future = submit_steps(executor, 4, "start", st.timed_steps, 4, 0.05, release)
    estimates = record(future, "remaining_time")
    try:
        assert future.remaining_time is None
        assistant.run_until(future, "complete", lambda f: f.complete == 3, timeout=20)
        # Three steps took about 0.15 s: one more is left.
        assert future.remaining_time is not None
        assert 0.0 < future.remaining_time < 5.0
        assert None not in estimates
    finally:
        tf.touch(release)
    wait_done(assistant, future)
    assert future.remaining_time == 0.0


def test_the_reporter_is_an_isteps_reporter():
    from offload._futures.steps_reporter import StepsReporter

    assert issubclass(StepsReporter, IStepsReporter)
    with pytest.raises(TypeError):
        IStepsReporter()  # abstract


def test_the_flusher_does_not_wake_for_reporters_whose_task_ended():
    """A burst of short steps tasks each leaves an entry with the flusher
    thread and ends before its due time: the flusher must drop those, not
    wake up for each one (10,000 wake-ups for 10,000 tasks slowed them 3x)."""
    import time

    from offload._futures import steps_reporter as sr

    class Reporter:
        def __init__(self, ended):
            self.ended = ended
            self.flushed = threading.Event()

        def flush_due(self):
            self.flushed.set()

    flusher = sr._Flusher()
    ended = [Reporter(True) for _ in range(1_000)]
    live = Reporter(False)
    start = time.monotonic()
    for index, reporter in enumerate(ended):
        flusher.schedule(start + 0.05 + index * 1e-4, reporter)
    flusher.schedule(start + 0.01, live)
    assert live.flushed.wait(10)
    deadline = time.monotonic() + 10
    while flusher._due:  # dropped once the live one is flushed: no wait
        assert time.monotonic() < deadline, f"{len(flusher._due)} entries left"
        time.sleep(0.005)  # polling a condition, with a deadline
    assert not any(reporter.flushed.is_set() for reporter in ended)  # never woken for


def test_the_reporter_keeps_its_rate_when_the_flusher_comes_late(monkeypatch):
    """A held update goes at its due time: not before, even when a late
    flusher comes for an earlier one that a step has sent since."""
    from offload._futures import steps_reporter as sr

    clock = [0.0]
    due = []
    monkeypatch.setattr(sr, "_now", lambda: clock[0])
    monkeypatch.setattr(sr._flusher, "schedule", lambda when, reporter: due.append(when))
    sent = []
    reporter = sr.StepsReporter(sent.append, lambda: False, "start", max_rate=10)

    def at(time, action, *args):
        clock[0] = time
        action(*args)

    at(0.0, reporter.step, "a")  # sent at once; the next may go at 0.1
    at(0.01, reporter.step, "b")  # held until 0.1
    at(0.1, reporter.step, "c")  # due: sent, replacing b; the next may go at 0.2
    at(0.11, reporter.step, "d")  # held until 0.2
    at(0.12, reporter.flush_due)  # the flusher, late, for b's 0.1: too early for d
    assert [message[1][1] for message in sent] == ["a", "c"]
    at(0.2, reporter.flush_due)  # d's own time
    at(0.3, reporter.close)  # nothing held: nothing more
    assert [message[1][1] for message in sent] == ["a", "c", "d"]
    assert due == [0.1, 0.2]
    assert sent[-1] == ("steps", (3, "d", 0.2))
