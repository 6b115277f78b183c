"""Behaviour suite for submit_call: runs on every context x event loop."""

from __future__ import annotations

import task_functions as tf
from conftest import StateRecorder, wait_done, wait_file
from offload.api import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXECUTING,
    FAILED,
    WAITING,
    CallFuture,
    submit_call,
)


def test_result_and_states(executor, assistant):
    future = submit_call(executor, tf.square, 7)
    assert isinstance(future, CallFuture)
    recorder = StateRecorder(future)
    assert future.state == WAITING and future.cancellable and not future.done
    wait_done(assistant, future)
    assert future.result == 49
    assert recorder.states == [WAITING, EXECUTING, COMPLETED]
    done_changes = [c for c in recorder.changes if c[0] == "done"]
    assert done_changes == [("done", False, True)]


def test_args_and_kwargs_reach_the_callable(executor, assistant):
    future = submit_call(executor, tf.add, 1, 2, z=3)
    wait_done(assistant, future)
    assert future.result == 6


def test_executor_and_callable_are_positional_only(executor, assistant):
    future = submit_call(executor, tf.echo_kwargs, executor=1, callable=2)
    wait_done(assistant, future)
    assert future.result == {"executor": 1, "callable": 2}


def test_exception_is_marshalled(executor, assistant):
    future = submit_call(executor, tf.fail, "bad input")
    recorder = StateRecorder(future)
    wait_done(assistant, future)
    assert recorder.states == [WAITING, EXECUTING, FAILED]
    type_name, message, tb = future.exception
    assert (type_name, message) == ("ValueError", "bad input")
    assert tb.startswith("Traceback") and "ValueError: bad input" in tb
    assert isinstance(future.exception_object, ValueError)


def test_exception_type_is_module_qualified(executor, assistant):
    future = submit_call(executor, tf.fail_struct)
    wait_done(assistant, future)
    assert future.exception[0] == "struct.error"


def test_result_and_exception_raise_attribute_error_in_wrong_state(executor, assistant):
    ok = submit_call(executor, tf.square, 2)
    bad = submit_call(executor, tf.fail)
    wait_done(assistant, ok)
    wait_done(assistant, bad)
    try:
        ok.exception
    except AttributeError as exc:
        assert "'completed'" in str(exc)
    else:
        raise AssertionError("exception of a COMPLETED future must raise")
    try:
        bad.result
    except AttributeError as exc:
        assert "'failed'" in str(exc)
    else:
        raise AssertionError("result of a FAILED future must raise")


def test_cancel_while_executing(executor, assistant, tmp_path):
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    future = submit_call(executor, tf.mark_and_return, started, "ignored")
    blocker = submit_call(executor, tf.wait_for_file, release)
    recorder = StateRecorder(blocker)
    assistant.run_until(blocker, "state", lambda f: f.state == EXECUTING, timeout=20)
    assert blocker.cancel() is True
    assert blocker.state == CANCELLING and not blocker.cancellable and not blocker.done
    assert blocker.cancel() is False
    tf.touch(release)
    wait_done(assistant, blocker)
    assert blocker.state == CANCELLED
    assert recorder.states == [WAITING, EXECUTING, CANCELLING, CANCELLED]
    wait_done(assistant, future)
    try:
        blocker.result
    except AttributeError as exc:
        assert "cancelled" in str(exc)
    else:
        raise AssertionError("a CANCELLED future has no result")


def test_cancel_before_start_never_runs_the_callable(make_executor, assistant, tmp_path):
    executor = make_executor(max_workers=1)
    release, ran = str(tmp_path / "release"), str(tmp_path / "ran")
    blocker = submit_call(executor, tf.wait_for_file, release)
    waiting = submit_call(executor, tf.mark_and_return, ran, 1)
    recorder = StateRecorder(waiting)
    assistant.run_until(blocker, "state", lambda f: f.state == EXECUTING, timeout=20)
    assert waiting.state == WAITING
    assert waiting.cancel() is True
    tf.touch(release)
    wait_done(assistant, waiting)
    wait_done(assistant, blocker)
    assert recorder.states == [WAITING, CANCELLING, CANCELLED]
    import os

    assert not os.path.exists(ran)


def test_cancelled_waiting_tasks_end_without_waiting_for_a_worker(make_executor, assistant, tmp_path):
    executor = make_executor(max_workers=1)
    release, ran = str(tmp_path / "release"), str(tmp_path / "ran")
    blocker = submit_call(executor, tf.wait_for_file, release)
    waiting = [submit_call(executor, tf.mark_and_return, ran, n) for n in range(5)]
    assistant.run_until(blocker, "state", lambda f: f.state == EXECUTING, timeout=20)
    assert all(future.cancel() for future in waiting)
    # The only worker is still busy, yet every cancelled task ends.
    for future in waiting:
        wait_done(assistant, future)
    assert [future.state for future in waiting] == [CANCELLED] * 5
    assert blocker.state == EXECUTING
    tf.touch(release)
    wait_done(assistant, blocker)
    import os

    assert not os.path.exists(ran)


def test_cancel_while_waiting_after_a_start_not_yet_seen(executor, assistant, tmp_path):
    # The task has started in its worker, but its "started" message has not
    # been delivered (the loop has not run): the future still says WAITING.
    # Cancelling it then cannot stop the callable; the future must still end
    # only once the task has, and go through its start on the way.
    import os
    import time

    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    future = submit_call(executor, tf.mark_then_wait, started, release)
    deadline = time.monotonic() + 20
    while not os.path.exists(started):  # the loop does not run meanwhile
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.005)
    assert future.state == WAITING
    recorder = StateRecorder(future)
    assert future.cancel() is True
    assistant.exercise_event_loop()
    assert future.state == CANCELLING  # the task runs on: not CANCELLED yet
    tf.touch(release)
    wait_done(assistant, future)
    assert recorder.states == [WAITING, CANCELLING, CANCELLED]


def test_cancel_after_done_returns_false(executor, assistant):
    future = submit_call(executor, tf.square, 3)
    wait_done(assistant, future)
    assert future.cancel() is False
    assert future.state == COMPLETED and future.result == 9


def test_many_calls_all_complete(executor, assistant):
    futures = [submit_call(executor, tf.square, i) for i in range(200)]
    for future in futures:
        wait_done(assistant, future)
    assert [f.result for f in futures] == [i * i for i in range(200)]


def test_failure_does_not_affect_other_futures(executor, assistant):
    futures = [submit_call(executor, tf.fail if i % 2 else tf.square, i) for i in range(20)]
    for future in futures:
        wait_done(assistant, future)
    assert [f.state for f in futures] == [FAILED if i % 2 else COMPLETED for i in range(20)]


def test_base_exceptions_fail_the_future(executor, assistant):
    futures = {k: submit_call(executor, tf.raise_base, k) for k in ("SystemExit", "KeyboardInterrupt")}
    for kind, future in futures.items():
        wait_done(assistant, future)
        assert future.state == FAILED
        assert future.exception[0] == kind


def test_exception_whose_str_raises(executor, assistant):
    future = submit_call(executor, tf.fail_unprintable)
    wait_done(assistant, future)
    assert future.state == FAILED
    assert future.exception[0].endswith("UnprintableError")
    assert "str()" in future.exception[1]


def test_result_whose_str_raises(executor, assistant):
    future = submit_call(executor, tf.unprintable_result)
    wait_done(assistant, future)
    assert future.state == COMPLETED
    assert type(future.result).__name__ == "UnprintableResult"


def test_file_release_helper_works(executor, assistant, tmp_path):
    # The suites rely on tasks writing files the test waits for.
    path = tmp_path / "written"
    future = submit_call(executor, tf.touch, str(path))
    wait_file(assistant, path)
    wait_done(assistant, future)
    assert future.state == COMPLETED
