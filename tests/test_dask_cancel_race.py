"""Regression: a Dask task cancelled just as it starts.

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
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from reliability_tasks import block_ignoring_cancel

from offload.api import CANCELLED, CANCELLING, AsyncioEventLoop, TraitsExecutor, submit_call
from offload.testing.pytest_plugin import OffloadAssistant

pytestmark = pytest.mark.dask


def test_a_dask_task_cancelled_as_it_starts_is_not_cancelled_before_it_ends(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("distributed")
    from offload._contexts.dask_context import DaskContext
    from offload._routing import dask_outbox

    # Messages wait half a second in the worker's outbox: the client learns
    # that the task started long after it did.
    monkeypatch.setattr(dask_outbox, "FLUSH_INTERVAL", 0.5)
    started = str(tmp_path / "started")
    release = str(tmp_path / "release")
    event_loop = AsyncioEventLoop()
    assistant = OffloadAssistant(event_loop)
    context = DaskContext(n_workers=1, processes=False)
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
