"""A task that forks its worker process.

The child of such a fork has copies of the worker's pipes and of its loop.
A child that returns from the task (instead of ending with ``os._exit``)
must not report to the application or take the worker's next item: it is
ended, and says so on its standard error; the parent's result stands.
"""

from __future__ import annotations

import pytest

import process_tasks as pt
from conftest import wait_done
from offload.api import (
    MultiprocessingContext,
    TraitsExecutor,
    submit_call,
    submit_progress,
)

pytestmark = [
    pytest.mark.process,
    # Python 3.12+ warns, in the worker, that it forks with threads running
    # (the worker's own): a real warning, which the worker now forwards to
    # the application, where the suite's filters would raise it.
    pytest.mark.filterwarnings(
        "ignore:This process .* is multi-threaded, use of fork:DeprecationWarning"
    ),
]


@pytest.fixture
def executor(offload_assistant):
    with MultiprocessingContext() as context:
        executor = TraitsExecutor(
            context=context, event_loop=offload_assistant.event_loop, max_workers=1
        )
        try:
            yield executor
        finally:
            executor.shutdown(timeout=20)


@pytest.mark.parametrize("how, code", [("return", 0), ("raise", 1)])
def test_a_forked_child_that_returns_is_ended_and_the_parent_result_stands(
    executor, offload_assistant, how, code
):
    future = submit_call(executor, pt.fork_and_forget_to_exit, how)
    wait_done(offload_assistant, future)
    assert future.state == "completed", future.exception if future.state == "failed" else None
    who, exit_code, said = future.result
    assert who == "parent"
    assert exit_code == code
    assert "forked" in said and "os._exit" in said
    if how == "raise":
        assert "raised in the forked child" in said
    # The worker goes on, with its protocol intact.
    futures = [submit_call(executor, abs, -n) for n in range(5)]
    for after in futures:
        wait_done(offload_assistant, after)
    assert [after.result for after in futures] == list(range(5))


def test_a_forked_child_cannot_send_messages(executor, offload_assistant):
    received = []
    future = submit_progress(executor, pt.fork_and_forget_to_exit, "progress")
    future.observe(lambda event: received.append(event.new), "progress")
    wait_done(offload_assistant, future)
    who, exit_code, said = future.result
    assert who == "parent"
    assert "progress raised RuntimeError" in said and "forked" in said
    assert received == []
