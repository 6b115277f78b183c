"""Force-cancel on Dask: a worker that runs one task at a time (and has a
nanny) is restarted; the task ends CANCELLED and the cluster carries on."""

from __future__ import annotations

import time

import pytest

import control_tasks as ct
from conftest import wait_done, wait_file
from offload.api import CANCELLED, COMPLETED, EXECUTING, TraitsExecutor, submit_call

pytestmark = [pytest.mark.dask, pytest.mark.timeout(240)]


@pytest.fixture
def dask_context():
    pytest.importorskip("distributed")
    from offload.api import DaskContext

    context = DaskContext(n_workers=2, threads_per_worker=1)
    yield context
    context.close()


def test_force_cancel_restarts_a_single_threaded_worker(
    dask_context, offload_assistant, tmp_path
):
    assistant = offload_assistant
    executor = TraitsExecutor(context=dask_context, event_loop=assistant.event_loop)
    try:
        started = str(tmp_path / "started")
        future = submit_call(executor, ct.sleep_in_c, 120.0, started)
        wait_file(assistant, started, timeout=60)
        assistant.run_until(future, "state", lambda f: f.state == EXECUTING, timeout=60)
        asked = time.monotonic()
        assert future.cancel(force=True) is True
        wait_done(assistant, future, timeout=60)
        assert future.state == CANCELLED
        # Far sooner than the two minutes the task would sleep.
        assert time.monotonic() - asked < 60
        after = submit_call(executor, ct.worker_pid)
        wait_done(assistant, after, timeout=60)
        assert after.state == COMPLETED
    finally:
        executor.shutdown(timeout=60)
