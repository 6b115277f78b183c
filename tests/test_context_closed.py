"""A context closed under an executor that still runs.

The executor cannot run anything once its context is closed; it says so: it
moves to STOPPING at once, cancels its futures, becomes STOPPED once they
are done, and a submit names the closed context.
"""

from __future__ import annotations

import pytest

import task_functions as tf
from conftest import CONTEXTS, load, wait_done, wait_file
from offload.api import (
    CANCELLED,
    RUNNING,
    STOPPED,
    STOPPING,
    TraitsExecutor,
    submit_call,
    submit_progress,
)


@pytest.fixture(params=[
    "thread",
    pytest.param("process", marks=pytest.mark.process),
    pytest.param("dask", marks=pytest.mark.dask),
])
def context(request):
    if request.param == "dask":
        # A client of the suite's shared cluster: closing it leaves the
        # cluster running for the other tests.
        address = request.getfixturevalue("shared_dask_cluster")
        context = load(CONTEXTS, "dask")(address)
    else:
        context = load(CONTEXTS, request.param)()
    yield context
    context.close()


def test_closing_the_context_stops_the_executor_and_ends_its_futures(
    context, offload_assistant, tmp_path
):
    executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
    states = []
    executor.observe(lambda event: states.append(event.new), "state")
    started = str(tmp_path / "started")
    running = submit_progress(executor, tf.report_until_cancelled, started)
    wait_file(offload_assistant, started)
    assert executor.state == RUNNING

    context.close()

    assert executor.state == STOPPING
    assert not executor.running
    with pytest.raises(RuntimeError, match="context was closed") as info:
        submit_call(executor, tf.square, 2)
    assert "shut the executor down before" in str(info.value)
    wait_done(offload_assistant, running)
    assert running.state == CANCELLED
    offload_assistant.run_until(executor, "stopped", lambda e: e.stopped, timeout=20)
    assert states == [STOPPING, STOPPED]
    executor.shutdown()  # nothing left to do


def test_closing_the_context_of_an_idle_executor_stops_it_at_once(context, offload_assistant):
    executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
    context.close()
    assert executor.state == STOPPED


def test_an_executor_shut_down_first_is_left_alone_by_close(context, offload_assistant):
    executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
    future = submit_call(executor, tf.square, 3)
    wait_done(offload_assistant, future)
    executor.shutdown(timeout=20)
    context.close()
    assert executor.state == STOPPED
    assert future.result == 9


def test_a_dropped_executor_does_not_keep_a_callback_alive(context, offload_assistant):
    import gc
    import weakref

    executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
    executor.shutdown()
    gone = weakref.ref(executor)
    del executor
    gc.collect()
    assert gone() is None
    context.close()
