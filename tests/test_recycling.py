"""Worker recycling: MultiprocessingContext(max_tasks_per_worker=...,
max_worker_memory=...)."""

from __future__ import annotations

import os

import pytest

import control_tasks as ct
from conftest import wait_done
from offload.api import COMPLETED, MultiprocessingContext, TraitsExecutor, submit_call

pytestmark = pytest.mark.process


@pytest.fixture
def make(offload_assistant):
    made = []

    def make(max_workers=2, **options):
        context = MultiprocessingContext(**options)
        executor = TraitsExecutor(
            context=context, event_loop=offload_assistant.event_loop,
            max_workers=max_workers,
        )
        made.append((context, executor))
        return executor

    yield make
    for context, executor in made:
        executor.shutdown(timeout=30)
        context.close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("limit", [1, 10])
def test_a_thousand_tasks_never_hang(make, offload_assistant, limit):
    executor = make(max_tasks_per_worker=limit)
    futures = [submit_call(executor, ct.worker_pid) for _ in range(1000)]
    for future in futures:
        wait_done(offload_assistant, future, timeout=120)
    assert all(f.state == COMPLETED for f in futures)
    pids = [f.result for f in futures]
    # No worker ran more than ``limit`` tasks.
    assert max(pids.count(pid) for pid in set(pids)) <= limit


def test_one_task_per_worker(make, offload_assistant):
    executor = make(max_workers=1, max_tasks_per_worker=1)
    futures = [submit_call(executor, ct.worker_pid) for _ in range(5)]
    for future in futures:
        wait_done(offload_assistant, future)
    assert len({f.result for f in futures}) == 5


def test_a_worker_over_the_memory_limit_retires(make, offload_assistant):
    executor = make(max_workers=1, max_worker_memory=200 * 1024 * 1024)
    small = submit_call(executor, ct.memory_hog, 1)
    wait_done(offload_assistant, small)
    again = submit_call(executor, ct.worker_pid)
    wait_done(offload_assistant, again)
    assert again.result == small.result  # under the limit: the same worker
    hog = submit_call(executor, ct.memory_hog, 300)
    wait_done(offload_assistant, hog)
    assert hog.state == COMPLETED
    after = submit_call(executor, ct.worker_pid)
    wait_done(offload_assistant, after)
    assert after.state == COMPLETED
    assert after.result != hog.result


@pytest.mark.parametrize("name", ["max_tasks_per_worker", "max_worker_memory"])
@pytest.mark.parametrize(
    "value, error", [(0, ValueError), (-5, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_limits_are_validated(name, value, error):
    with pytest.raises(error, match=name):
        MultiprocessingContext(**{name: value})


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="shared memory through /dev/shm")
def test_the_applications_segments_a_worker_keeps_mapped_do_not_count(
    make, offload_assistant
):
    # A worker keeps its mappings of large arguments' segments for the next
    # tasks: that memory is the application's, not the worker's, and must
    # not retire it.
    probe = submit_call(make(max_workers=1), ct.resident)
    wait_done(offload_assistant, probe)
    executor = make(max_workers=1, max_worker_memory=probe.result + 64 * 1024 * 1024)
    big = bytes(100 * 1024 * 1024)
    pids = []
    for _ in range(2):
        future = submit_call(executor, ct.length_and_pid, big)
        wait_done(offload_assistant, future)
        assert future.state == COMPLETED
        assert future.result[0] == len(big)
        pids.append(future.result[1])
    after = submit_call(executor, ct.worker_pid)
    wait_done(offload_assistant, after)
    assert pids == [after.result] * 2
