"""Per-task options and time limits: executor.options(timeout=...,
priority=...), TraitsExecutor(default_timeout=...), TaskTimedOut."""

from __future__ import annotations

import math
import time

import pytest

import control_tasks as ct
from conftest import wait_done, wait_file
from offload.api import (
    CANCELLED,
    COMPLETED,
    EXECUTING,
    FAILED,
    MultiprocessingContext,
    TaskTimedOut,
    TraitsExecutor,
    submit_call,
    submit_progress,
)


def test_a_task_past_its_limit_fails_with_task_timed_out(executor, assistant, tmp_path):
    started = str(tmp_path / "started")
    future = submit_progress(executor.options(timeout=0.5), ct.cooperative, 30.0, started)
    states = []
    future.observe(lambda event: states.append(event.new), "state")
    wait_file(assistant, started)
    begun = time.monotonic()
    wait_done(assistant, future)
    assert future.state == FAILED
    assert time.monotonic() - begun >= 0.4
    assert isinstance(future.exception_object, TaskTimedOut)
    assert isinstance(future.exception_object, TimeoutError)
    assert "TaskTimedOut" in future.exception[0]
    assert "0.5 seconds" in future.exception[1]
    assert states == [EXECUTING, FAILED]


@pytest.mark.parametrize("task", [ct.sleep_in_c, ct.blocking_select, ct.spin])
def test_a_task_deaf_to_cancellation_still_fails_with_task_timed_out(
    executor, assistant, task
):
    # Killed on processes; elsewhere the future fails once the task ends.
    future = submit_call(executor.options(timeout=0.3), task, 1.5)
    wait_done(assistant, future)
    assert future.state == FAILED
    assert isinstance(future.exception_object, TaskTimedOut)


def test_a_task_within_its_limit_completes(executor, assistant):
    future = submit_call(executor.options(timeout=30.0), ct.worker_pid)
    wait_done(assistant, future)
    assert future.state == COMPLETED


def test_options_never_take_the_task_s_keyword_arguments(executor, assistant):
    options = executor.options(timeout=30.0, priority=2)
    future = submit_call(options, ct.echo_kwargs, timeout=3, priority="high")
    wait_done(assistant, future)
    assert future.result == {"timeout": 3, "priority": "high"}


def test_options_may_be_reused_and_submit_like_the_executor(executor, assistant):
    from offload._futures.call import BackgroundCall

    options = executor.options(timeout=30.0)
    futures = [options.submit(BackgroundCall(ct.worker_pid, (), {})) for _ in range(3)]
    for future in futures:
        wait_done(assistant, future)
    assert [f.state for f in futures] == [COMPLETED] * 3


def test_default_timeout_applies_to_every_task(make_executor, assistant, tmp_path):
    executor = make_executor(default_timeout=0.3)
    started = str(tmp_path / "started")
    timed = submit_progress(executor, ct.cooperative, 30.0, started)
    wait_done(assistant, timed)
    assert isinstance(timed.exception_object, TaskTimedOut)
    # math.inf lifts the default for one task.
    free = submit_progress(executor.options(timeout=math.inf), ct.cooperative, 0.6)
    wait_done(assistant, free)
    assert free.state == COMPLETED


def test_cancel_before_the_limit_ends_cancelled(executor, assistant, tmp_path):
    started = str(tmp_path / "started")
    future = submit_progress(executor.options(timeout=0.3), ct.cooperative, 30.0, started)
    wait_file(assistant, started)
    future.cancel()
    wait_done(assistant, future)
    assert future.state == CANCELLED


@pytest.mark.parametrize(
    "options, error, words",
    [
        ({"timeout": 0}, ValueError, "timeout must be more than 0"),
        ({"timeout": -1.0}, ValueError, "timeout"),
        ({"timeout": float("nan")}, ValueError, "timeout"),
        ({"timeout": "5"}, TypeError, "timeout must be a number"),
        ({"priority": 1.5}, TypeError, "priority must be an int"),
        ({"priority": True}, TypeError, "priority"),
    ],
)
def test_bad_options_say_what_is_wrong(executor, options, error, words):
    with pytest.raises(error, match=words):
        executor.options(**options)


def test_bad_default_timeout_says_what_is_wrong(assistant):
    with pytest.raises(ValueError, match="default_timeout"):
        TraitsExecutor(event_loop=assistant.event_loop, default_timeout=-2)


def test_options_are_keyword_only(executor):
    with pytest.raises(TypeError):
        executor.options(5.0)


# Processes: the worker is killed --------------------------------------------


@pytest.fixture
def process_executor(offload_assistant):
    context = MultiprocessingContext(kill_grace=0.5)
    executor = TraitsExecutor(
        context=context, event_loop=offload_assistant.event_loop, max_workers=2
    )
    yield executor
    executor.shutdown(timeout=20)
    context.close()


@pytest.mark.process
@pytest.mark.parametrize("task", [ct.spin, ct.sleep_in_c, ct.blocking_select, ct.ignore_sigterm])
def test_a_process_task_past_its_limit_is_killed(
    process_executor, offload_assistant, tmp_path, task
):
    started = str(tmp_path / "started")
    future = submit_call(process_executor.options(timeout=0.5), task, 60.0, started)
    wait_file(offload_assistant, started)
    begun = time.monotonic()
    wait_done(offload_assistant, future)
    assert future.state == FAILED
    assert isinstance(future.exception_object, TaskTimedOut)
    assert time.monotonic() - begun < 10.0
    # The executor carries on, on a new worker.
    after = submit_call(process_executor, ct.worker_pid)
    wait_done(offload_assistant, after)
    assert after.state == COMPLETED


@pytest.mark.process
def test_a_timed_out_task_s_processes_die(process_executor, offload_assistant, tmp_path):
    started = tmp_path / "child"
    future = submit_call(
        process_executor.options(timeout=0.5), ct.spawn_grandchild, str(started)
    )
    wait_file(offload_assistant, str(started))
    wait_done(offload_assistant, future)
    assert isinstance(future.exception_object, TaskTimedOut)
    child = int(started.read_text())
    deadline = time.monotonic() + 20
    while not ct.process_gone(child):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_submit_takes_options_as_its_second_argument(executor, assistant):
    # executor.submit(task, options) is options.submit(task): the limit,
    # and the check of max_progress_rate, apply either way.
    from offload._futures.call import BackgroundCall
    from offload._futures.progress import BackgroundProgress

    future = executor.submit(
        BackgroundProgress(ct.cooperative, (30.0, None), {}),
        executor.options(timeout=0.3),
    )
    wait_done(assistant, future)
    assert isinstance(future.exception_object, TaskTimedOut)
    with pytest.raises(TypeError, match="max_progress_rate"):
        executor.submit(
            BackgroundCall(ct.worker_pid, (), {}), executor.options(max_progress_rate=5)
        )
    plain = executor.submit(BackgroundCall(ct.worker_pid, (), {}), executor.options())
    wait_done(assistant, plain)
    assert plain.state == COMPLETED
