"""Behaviour suite for submit_iteration: runs on every context x event loop."""

from __future__ import annotations

import os

import task_functions as tf
from conftest import StateRecorder, wait_done, wait_file
from offload.api import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXECUTING,
    FAILED,
    WAITING,
    IterationFuture,
    submit_iteration,
)


def collect(future):
    items = []
    future.observe(lambda event: items.append(event.new), "result_event")
    return items


def test_items_arrive_in_order_before_done(executor, assistant):
    future = submit_iteration(executor, tf.count_up, 1000)
    assert isinstance(future, IterationFuture)
    items = collect(future)
    seen_at_done = []
    future.observe(lambda event: seen_at_done.append(len(items)), "done")
    wait_done(assistant, future)
    assert items == list(range(1000))
    assert seen_at_done == [1000]
    assert future.state == COMPLETED
    assert future.result is None


def test_generator_return_value_is_the_result(executor, assistant):
    future = submit_iteration(executor, tf.count_up_and_return, 3, "total")
    items = collect(future)
    wait_done(assistant, future)
    assert items == [0, 1, 2]
    assert future.result == "total"


def test_plain_iterable_works(executor, assistant):
    future = submit_iteration(executor, range, 5)
    items = collect(future)
    wait_done(assistant, future)
    assert items == [0, 1, 2, 3, 4] and future.state == COMPLETED


def test_failure_after_items(executor, assistant):
    future = submit_iteration(executor, tf.fail_after, 4)
    items = collect(future)
    wait_done(assistant, future)
    assert items == [0, 1, 2, 3]
    assert future.state == FAILED
    assert future.exception[:2] == ("ValueError", "failed after 4")


def test_not_iterable_fails(executor, assistant):
    future = submit_iteration(executor, tf.not_iterable)
    wait_done(assistant, future)
    assert future.state == FAILED
    assert future.exception[0] == "TypeError"


def test_cancel_stops_between_items_and_closes_generator(executor, assistant, tmp_path):
    started, release, closed = (str(tmp_path / n) for n in ("started", "release", "closed"))
    future = submit_iteration(executor, tf.iterate_until_released, started, release, closed)
    recorder = StateRecorder(future)
    items = collect(future)
    wait_file(assistant, started)
    assistant.run_until(future, "state", lambda f: f.state == EXECUTING)
    assert future.cancel() is True
    assert future.state == CANCELLING
    count_at_cancel = len(items)
    tf.touch(release)
    wait_done(assistant, future)
    assert future.state == CANCELLED
    assert recorder.states == [WAITING, EXECUTING, CANCELLING, CANCELLED]
    # Nothing is delivered once CANCELLING.
    assert len(items) == count_at_cancel
    assert os.path.exists(closed)
