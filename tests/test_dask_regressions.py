"""Regressions on Dask found by the reliability tests.

A Dask task cancelled just as it starts
---------------------------------------
Found by the fault tests (``test_shutdown_with_a_task_ignoring_cancel...``
on Dask returned at once, STOPPED, with the task still running): the cancel
thread cancelled in Dask every task whose ``STARTED`` message had not yet
reached the client.  A task that had in fact started kept running on its
worker, yet its future went CANCELLED at once, and ``shutdown()`` returned
while the task still ran: CANCELLED before the task ended, against the
SPEC's state machine.

The window is the time ``STARTED`` takes to travel (the outbox's flush
interval plus a scheduler hop); an in-process cluster with a long flush
interval makes it wide, so the test is deterministic.

A result or exception that cannot be unpickled in the application
------------------------------------------------------------------
Found by ``test_exception_whose_unpickling_fails_fails_the_future[dask]``,
which hung: the worker pickled each batch of messages whole, so the
client's failure to unpickle one exception dropped the whole batch, that
task's end (its future never ended) and other tasks' messages with it.
Final payloads now travel pickled on their own.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from offload.api import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    FAILED,
    AsyncioEventLoop,
    TraitsExecutor,
    submit_call,
    submit_progress,
)
from offload.testing.pytest_plugin import OffloadAssistant
from reliability_tasks import (
    block_ignoring_cancel,
    report_many,
    report_then_raise_ununpicklable,
    return_unloadable,
)

pytestmark = pytest.mark.dask


def test_a_dask_task_cancelled_as_it_starts_is_not_cancelled_before_it_ends(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("distributed")
    from offload._backends.dask import outbox as dask_outbox
    from offload._backends.dask.context import DaskContext

    # Messages wait half a second in the worker's outbox: the client learns
    # that the task started long after it did.
    monkeypatch.setattr(dask_outbox, "FLUSH_INTERVAL", 0.5)
    started = str(tmp_path / "started")
    release = str(tmp_path / "release")
    event_loop = AsyncioEventLoop()
    assistant = OffloadAssistant(event_loop)
    # In this process, so that the workers (threads here) see the patch.
    context = DaskContext(n_workers=1, processes=False, in_process=True)
    executor = TraitsExecutor(context=context, event_loop=event_loop)
    try:
        future = submit_call(executor, block_ignoring_cancel, release, started)
        deadline = time.monotonic() + 20
        while not os.path.exists(started):
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.001)  # polling a file the worker writes
        assert future.cancel()
        # The task runs on, ignoring the cancellation: its future must stay
        # CANCELLING for as long as it does.
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            assistant.exercise_event_loop()
            assert future.state == CANCELLING, "CANCELLED while the task still runs"
        with open(release, "w"):
            pass
        assistant.run_until(future, "done", lambda f: f.done, timeout=20)
        assert future.state == CANCELLED
    finally:
        with open(release, "w"):
            pass
        executor.shutdown(timeout=20)
        context.close()
        assistant.dispose()
        event_loop.close()


def test_a_dask_payload_that_cannot_be_unpickled_fails_only_its_own_future() -> None:
    pytest.importorskip("distributed")
    from offload._backends.dask.context import DaskContext

    event_loop = AsyncioEventLoop()
    assistant = OffloadAssistant(event_loop)
    context = DaskContext(n_workers=1)
    executor = TraitsExecutor(context=context, event_loop=event_loop)
    try:
        values: list[int] = []
        raising = submit_progress(executor, report_then_raise_ununpicklable, 50)
        raising.observe(lambda event: values.append(event.new), "progress")
        unloadable = submit_call(executor, return_unloadable)
        others = [submit_progress(executor, report_many, 0, 100) for _ in range(4)]
        everything = [raising, unloadable, *others]
        deadline = time.monotonic() + 30
        while not all(f.done for f in everything):
            assert time.monotonic() < deadline, [f.state for f in everything]
            assistant.exercise_event_loop()
        assert raising.state == FAILED
        assert raising.exception[:2] == (
            "reliability_tasks.UnunpicklableError", "no unpickling"
        )
        assert raising.exception_object is None
        assert values == list(range(50))
        assert unloadable.state == FAILED
        assert "could not be unpickled" in unloadable.exception[1]
        assert "refuses to be unpickled" in unloadable.exception[1]
        assert all(f.state == COMPLETED and f.result == 100 for f in others)
    finally:
        executor.shutdown(timeout=20)
        context.close()
        assistant.dispose()
        event_loop.close()


def test_a_task_still_running_when_its_context_closes_keeps_seeing_its_cancel():
    # Closing a context cancels its running tasks and has the workers forget
    # its keys, both pushed in one batch: forgetting first erased the cancel,
    # and each task ran to its end (40 s in a test) instead of stopping.
    from offload._backends.dask import cancel

    prefix = f"offload-test-{os.getpid()}"
    running, queued = f"{prefix}:1", f"{prefix}:2"
    cancel.task_starting(running)
    try:
        assert cancel.mark_cancelled([running, queued]) == [running]
        cancel.forget_cancelled(prefix)
        assert cancel.WorkerCancelFlag(running).is_set()
        assert not cancel.WorkerCancelFlag(queued).is_set()  # forgotten at once
    finally:
        cancel.task_ended(running)
    assert not cancel.WorkerCancelFlag(running).is_set()  # forgotten as it ended
