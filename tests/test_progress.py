"""Behaviour suite for submit_progress: runs on every context x event loop."""

from __future__ import annotations

import pytest

import task_functions as tf
from conftest import StateRecorder, wait_done, wait_file
from offload.api import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXECUTING,
    FAILED,
    WAITING,
    ProgressFuture,
    submit_progress,
)


def collect(future):
    values = []
    future.observe(lambda event: values.append(event.new), "progress")
    return values


def test_progress_in_order_then_result(executor, assistant):
    future = submit_progress(executor, tf.report, 5000)
    assert isinstance(future, ProgressFuture)
    values = collect(future)
    at_done = []
    future.observe(lambda event: at_done.append(len(values)), "done")
    wait_done(assistant, future)
    assert values == list(range(5000))
    assert at_done == [5000]
    assert future.state == COMPLETED and future.result == 5000


def test_kwargs_pass_through_with_progress(executor, assistant):
    future = submit_progress(executor, tf.progress_kwargs, a=1, b=2)
    values = collect(future)
    wait_done(assistant, future)
    assert values == [["a", "b"]]
    assert future.result == {"a": 1, "b": 2}


def test_caller_may_not_pass_progress(executor):
    with pytest.raises(TypeError, match="progress"):
        submit_progress(executor, tf.report, 3, progress=None)
    # Nothing was submitted, the executor is still usable.
    assert executor.running


def test_failure_after_progress(executor, assistant):
    future = submit_progress(executor, tf.report_then_fail)
    values = collect(future)
    wait_done(assistant, future)
    assert values == [1]
    assert future.state == FAILED and future.exception[1] == "after progress"


def test_cancel_raises_task_cancelled_in_task_and_ends_cancelled(executor, assistant, tmp_path):
    started = str(tmp_path / "started")
    future = submit_progress(executor, tf.report_until_cancelled, started)
    recorder = StateRecorder(future)
    values = collect(future)
    wait_file(assistant, started)
    assistant.run_until(future, "state", lambda f: f.state == EXECUTING)
    assert future.cancel() is True
    count = len(values)
    wait_done(assistant, future, timeout=20)
    assert future.state == CANCELLED
    assert recorder.states == [WAITING, EXECUTING, CANCELLING, CANCELLED]
    assert len(values) == count
    with pytest.raises(AttributeError):
        future.exception
