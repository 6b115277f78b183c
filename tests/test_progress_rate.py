"""``executor.options(max_progress_rate=N)``: coalesced progress, last value kept."""

from __future__ import annotations

import math

import pytest

import rate_tasks as rt
import steps_tasks as st
import task_functions as tf
from conftest import wait_done
from offload.api import COMPLETED, submit_call, submit_progress, submit_steps


def collect(future, trait):
    seen = []
    future.observe(lambda event: seen.append(event.new), trait)
    return seen


def test_a_flood_is_coalesced_and_its_last_report_kept(executor, assistant):
    n = 20_000
    future = submit_progress(executor.options(max_progress_rate=10), tf.report, n)
    seen = collect(future, "progress")
    wait_done(assistant, future, timeout=30)
    assert future.state == COMPLETED and future.result == n
    # Coalesced to the latest value: far fewer reports, in order, the
    # last one always delivered (before the end).
    assert seen[-1] == n - 1
    assert len(seen) < n // 100, len(seen)
    assert seen == sorted(set(seen))


def test_without_the_option_every_report_is_delivered(executor, assistant):
    n = 2_000
    future = submit_progress(executor, tf.report, n)
    seen = collect(future, "progress")
    wait_done(assistant, future, timeout=30)
    assert seen == list(range(n))


def test_a_kept_report_is_sent_at_its_due_time_without_another(executor, assistant, tmp_path):
    release = str(tmp_path / "release")
    future = submit_progress(
        executor.options(max_progress_rate=5), rt.report_then_wait, release
    )
    seen = collect(future, "progress")
    # The second report came too soon after the first, and the task then
    # reports nothing more: it still arrives (the flusher sends it).
    assistant.run_until(future, "progress", lambda f: seen[-1:] == [2], timeout=20)
    assert not future.done
    open(release, "w").close()
    wait_done(assistant, future)
    assert seen == [1, 2]
    assert future.result == "released"


def test_steps_with_an_unlimited_rate_deliver_every_update(executor, assistant):
    future = submit_steps(
        executor.options(max_progress_rate=math.inf), 40, "start", st.steps, 40
    )
    messages = collect(future, "message")
    wait_done(assistant, future, timeout=30)
    assert messages == [f"step {i}" for i in range(40)] + ["all done"]


@pytest.mark.parametrize("matrix", [("thread", "asyncio")], indirect=True)
def test_bad_rates_and_kinds_are_refused_with_the_fix(executor):
    with pytest.raises(ValueError, match="max_progress_rate must be more than 0"):
        executor.options(max_progress_rate=0)
    with pytest.raises(TypeError, match="max_progress_rate must be a number"):
        executor.options(max_progress_rate="fast")
    with pytest.raises(TypeError, match="submit_progress, submit_steps"):
        submit_call(executor.options(max_progress_rate=5), tf.square, 2)
    assert executor.futures == []
