"""Force-cancel: ``future.cancel(force=True)`` on every context.

Processes: the worker running the task is killed with every process it
started, a replacement starts, the rest carries on.  Threads (and Dask
workers running several tasks at once): a cooperative cancel.
"""

from __future__ import annotations

import time

import pytest

import control_tasks as ct
from conftest import wait_done, wait_file
from offload.api import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXECUTING,
    MultiprocessingContext,
    TraitsExecutor,
    submit_call,
)


def wait_state(assistant, future, state, timeout=20.0):
    assistant.run_until(future, "state", lambda f: f.state == state, timeout=timeout)


def wait_gone(pid, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not ct.process_gone(pid):
        assert time.monotonic() < deadline, f"process {pid} is still alive"
        time.sleep(0.01)  # polls another process: nothing to wait on


# Every context ----------------------------------------------------------------


def test_force_cancel_of_a_task_that_ignores_cancellation(executor, assistant, tmp_path):
    started = str(tmp_path / "started")
    future = submit_call(executor, ct.spin, 1.0, started)
    wait_file(assistant, started)
    wait_state(assistant, future, EXECUTING)
    assert future.cancel(force=True) is True
    assert future.state == CANCELLING
    wait_done(assistant, future)
    assert future.state == CANCELLED
    # The executor carries on.
    after = submit_call(executor, ct.worker_pid)
    wait_done(assistant, after)
    assert after.state == COMPLETED


def test_force_cancel_of_a_waiting_task_is_a_cancel(executor, assistant, tmp_path):
    futures = [submit_call(executor, ct.sleep_in_c, 0.5) for _ in range(8)]
    last = futures[-1]
    assert last.cancel(force=True) is True
    for future in futures:
        wait_done(assistant, future)
    assert last.state == CANCELLED
    assert [f.state for f in futures[:-1]] == [COMPLETED] * 7


def test_force_cancel_of_a_done_future_returns_false(executor, assistant):
    future = submit_call(executor, ct.worker_pid)
    wait_done(assistant, future)
    assert future.cancel(force=True) is False
    assert future.state == COMPLETED


# Processes --------------------------------------------------------------------


@pytest.fixture
def process_context():
    context = MultiprocessingContext(kill_grace=0.5)
    yield context
    context.close()


@pytest.fixture
def process_executor(process_context, offload_assistant):
    executor = TraitsExecutor(
        context=process_context, event_loop=offload_assistant.event_loop, max_workers=2
    )
    yield executor
    executor.shutdown(timeout=20)


@pytest.mark.process
@pytest.mark.parametrize("task", [ct.spin, ct.sleep_in_c, ct.blocking_select])
def test_force_cancel_kills_the_worker(process_executor, offload_assistant, tmp_path, task):
    assistant = offload_assistant
    started = str(tmp_path / "started")
    future = submit_call(process_executor, task, 60.0, started)
    wait_file(assistant, started)
    wait_state(assistant, future, EXECUTING)
    asked = time.monotonic()
    assert future.cancel(force=True) is True
    assert future.state == CANCELLING
    wait_done(assistant, future)
    assert future.state == CANCELLED
    # Measured properly in benchmarks/control.py; generous for a loaded host.
    assert time.monotonic() - asked < 5.0


@pytest.mark.process
def test_force_cancel_of_a_task_ignoring_sigterm_waits_kill_grace(
    process_executor, offload_assistant, tmp_path
):
    assistant = offload_assistant
    started = str(tmp_path / "started")
    future = submit_call(process_executor, ct.ignore_sigterm, 60.0, started)
    wait_file(assistant, started)
    wait_state(assistant, future, EXECUTING)
    asked = time.monotonic()
    future.cancel(force=True)
    wait_done(assistant, future)
    elapsed = time.monotonic() - asked
    assert future.state == CANCELLED
    assert 0.5 <= elapsed < 5.5


@pytest.mark.process
def test_force_cancel_kills_the_processes_the_task_started(
    process_executor, offload_assistant, tmp_path
):
    assistant = offload_assistant
    started = tmp_path / "child"
    future = submit_call(process_executor, ct.spawn_grandchild, str(started))
    wait_file(assistant, str(started))
    child = int(started.read_text())
    assert not ct.process_gone(child)
    future.cancel(force=True)
    wait_done(assistant, future)
    assert future.state == CANCELLED
    wait_gone(child)


@pytest.mark.process
def test_other_tasks_carry_on_and_a_replacement_starts(
    process_executor, offload_assistant, tmp_path
):
    assistant = offload_assistant
    started = str(tmp_path / "started")
    stuck = submit_call(process_executor, ct.sleep_in_c, 60.0, started)
    other = submit_call(process_executor, ct.sleep_in_c, 1.0)
    wait_file(assistant, started)
    first_pid = submit_call(process_executor, ct.worker_pid)  # waits for a worker
    stuck.cancel(force=True)
    wait_done(assistant, stuck)
    wait_done(assistant, other)
    wait_done(assistant, first_pid)
    assert (stuck.state, other.state, first_pid.state) == (CANCELLED, COMPLETED, COMPLETED)
    later = [submit_call(process_executor, ct.worker_pid) for _ in range(4)]
    for future in later:
        wait_done(assistant, future)
    assert all(f.state == COMPLETED for f in later)


@pytest.mark.process
def test_cancel_then_force_cancel_escalates(process_executor, offload_assistant, tmp_path):
    assistant = offload_assistant
    started = str(tmp_path / "started")
    future = submit_call(process_executor, ct.sleep_in_c, 60.0, started)
    wait_file(assistant, started)
    wait_state(assistant, future, EXECUTING)
    assert future.cancel() is True
    assert future.cancel(force=True) is False  # what cancel() returns
    wait_done(assistant, future)
    assert future.state == CANCELLED


@pytest.mark.parametrize(
    "value, error", [(0, ValueError), (-1.0, ValueError), ("1", TypeError), (True, TypeError)]
)
def test_kill_grace_is_validated(value, error):
    with pytest.raises(error, match="kill_grace"):
        MultiprocessingContext(kill_grace=value)
