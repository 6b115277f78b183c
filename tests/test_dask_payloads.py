"""Large arguments on Dask: sent to the cluster once for all the tasks.

What a user sees: an array given to many tasks is in the cluster's memory
once, whatever the number of tasks; an array changed between submissions
is sent again and each task sees the content it was given; results are
right; and nothing stays on the cluster once the tasks end or the context
closes, however long the session.  Small arguments travel with their task.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("distributed")
numpy = pytest.importorskip("numpy")

import dask_payload_tasks as tasks  # noqa: E402
import task_functions as tf  # noqa: E402
from conftest import wait_done, wait_file  # noqa: E402
from offload.api import (  # noqa: E402
    CANCELLED,
    DaskContext,
    TraitsExecutor,
    submit_call,
    submit_progress,
)

pytestmark = [pytest.mark.dask]

#: Elements of a float64 array of 4 MB: above the default 1 MiB threshold.
BIG = 500_000
BIG_BYTES = BIG * 8


def shared_keys(client: Any, size: int = BIG_BYTES) -> list[str]:
    """Keys of data of at least ``size`` bytes in the cluster's memory."""
    return [key for key, nbytes in client.nbytes(summary=False).items()
            if nbytes >= size]


def wait_until(condition: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # polling the cluster's state
    return True


@pytest.fixture(scope="module", autouse=True)
def _cluster_first(shared_dask_cluster: str) -> str:
    """The suite's shared cluster, started before any test's leak check
    takes its snapshot (module scope comes first): it outlives the tests."""
    return shared_dask_cluster


@pytest.fixture(params=["helper", "address"])
def context(request: pytest.FixtureRequest) -> Iterator[DaskContext]:
    """The embedded cluster (its client in the helper process), or a
    cluster of yours by address."""
    if request.param == "helper":
        context = DaskContext(n_workers=2, processes=False, protocol="tcp", timeout=30)
    else:
        context = DaskContext(request.getfixturevalue("shared_dask_cluster"), timeout=30)
    yield context
    context.close()


@pytest.fixture
def executor(context: DaskContext, offload_assistant: Any) -> Iterator[TraitsExecutor]:
    executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
    yield executor
    executor.shutdown(timeout=60)


def test_an_array_given_to_many_tasks_is_sent_once(
    context, executor, offload_assistant, tmp_path
):
    array = numpy.full(BIG, 1.5)
    release = str(tmp_path / "release")
    futures = [submit_call(executor, tasks.total, array, release) for _ in range(8)]
    client = context.client
    # The tasks wait for the release: the array is on the cluster, once.
    assert wait_until(lambda: len(shared_keys(client)) >= 1), "never scattered"
    assert len(shared_keys(client)) == 1
    tf.touch(release)
    for future in futures:
        wait_done(offload_assistant, future, timeout=60)
    assert [future.result for future in futures] == [1.5 * BIG] * 8
    # Released once no task needs it.
    assert wait_until(lambda: not shared_keys(client)), shared_keys(client)


def test_arrays_in_a_list_or_a_dict_argument_are_sent_once_each(
    context, executor, offload_assistant, tmp_path
):
    first, second = numpy.full(BIG, 1.0), numpy.full(BIG, 2.0)
    release = str(tmp_path / "release")
    futures = [
        submit_call(executor, tasks.total_of_parts, [first, {"second": second}], release)
        for _ in range(3)
    ] + [submit_call(executor, tasks.total_of_parts, parts=(second, first), release=release)]
    client = context.client
    assert wait_until(lambda: len(shared_keys(client)) >= 2), "never scattered"
    assert len(shared_keys(client)) == 2
    tf.touch(release)
    for future in futures:
        wait_done(offload_assistant, future, timeout=60)
    assert [future.result for future in futures] == [3.0 * BIG] * 4
    assert context._scatterer.scattered == 2
    assert wait_until(lambda: not shared_keys(client)), shared_keys(client)


def test_a_long_list_is_not_searched_and_travels_with_its_task(
    context, executor, offload_assistant
):
    parts = [numpy.full(BIG, 1.0)] + [numpy.zeros(1)] * 100
    future = submit_call(executor, tasks.total_of_parts, parts)
    wait_done(offload_assistant, future, timeout=60)
    assert future.result == 1.0 * BIG
    assert context._scatterer.scattered == 0


def test_a_changed_array_is_sent_again_and_each_task_sees_its_content(
    context, executor, offload_assistant, tmp_path
):
    array = numpy.full(BIG, 1.0)
    release = str(tmp_path / "release")
    first = submit_call(executor, tasks.total, array, release)
    array[:] = 2.0  # the same array, new content: the first task keeps 1.0
    second = submit_call(executor, tasks.total, array, release)
    third = submit_call(executor, tasks.total, array.copy(), release)  # same content
    payload = bytes(range(256)) * (BIG_BYTES // 256)
    as_bytes = submit_call(executor, tasks.total, payload, release)
    again = submit_call(executor, tasks.total, payload, release)
    client = context.client
    # Three contents: the array before and after the change, and the bytes.
    assert wait_until(lambda: len(shared_keys(client)) >= 3), shared_keys(client)
    assert len(shared_keys(client)) == 3
    tf.touch(release)
    for future in (first, second, third, as_bytes, again):
        wait_done(offload_assistant, future, timeout=60)
    assert (first.result, second.result, third.result) == (BIG, 2.0 * BIG, 2.0 * BIG)
    assert as_bytes.result == again.result == float(sum(range(256)) * (BIG_BYTES // 256))
    assert wait_until(lambda: not shared_keys(client)), shared_keys(client)


def test_tasks_that_write_to_a_shared_array_each_write_their_own_copy(
    context, executor, offload_assistant, tmp_path
):
    array = numpy.zeros(BIG)
    release = str(tmp_path / "release")
    futures = [submit_call(executor, tasks.write_then_total, array, value, release)
               for value in (1.0, 2.0, 3.0, 4.0)]
    client = context.client
    assert wait_until(lambda: len(shared_keys(client)) >= 1), "never scattered"
    assert len(shared_keys(client)) == 1
    tf.touch(release)
    for future in futures:
        wait_done(offload_assistant, future, timeout=60)
    assert [future.result for future in futures] == [BIG * v for v in (1.0, 2.0, 3.0, 4.0)]
    assert not array.any()  # the application's array is untouched


def test_a_long_session_leaves_nothing_on_the_cluster(
    context, executor, offload_assistant, tmp_path
):
    array = numpy.zeros(BIG)
    client = context.client
    rounds = 12
    for round_number in range(rounds):
        array[:] = float(round_number)
        # Held until all three are submitted: one pending content per round.
        release = str(tmp_path / f"release-{round_number}")
        pair = [submit_call(executor, tasks.total, array, release) for _ in range(3)]
        tf.touch(release)
        for future in pair:
            wait_done(offload_assistant, future, timeout=60)
        assert [future.result for future in pair] == [round_number * BIG] * 3
    # Each round's content was sent once, and dropped once its tasks ended.
    assert context._scatterer.scattered == rounds
    assert wait_until(lambda: not shared_keys(client)), shared_keys(client)
    assert context._scatterer.pending() == 0


def test_small_arguments_travel_with_their_task(context, executor, offload_assistant):
    small = numpy.ones(1000)
    futures = [submit_call(executor, tasks.total, small) for _ in range(4)]
    for future in futures:
        wait_done(offload_assistant, future, timeout=60)
    assert [future.result for future in futures] == [1000.0] * 4
    assert context._scatterer.scattered == 0
    assert not shared_keys(context.client, 8000)


def test_the_threshold_is_yours_to_set(offload_assistant, shared_dask_cluster, tmp_path):
    with pytest.raises(TypeError, match="scatter_threshold"):
        DaskContext(shared_dask_cluster, scatter_threshold="1MB")
    with pytest.raises(ValueError, match="None turns scattering off"):
        DaskContext(shared_dask_cluster, scatter_threshold=0)
    release = str(tmp_path / "release")
    for threshold, expected in ((BIG_BYTES + 1, 0), (BIG_BYTES, 1), (None, 0)):
        with DaskContext(shared_dask_cluster, scatter_threshold=threshold) as context:
            executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
            try:
                future = submit_call(executor, tasks.total, numpy.ones(BIG), release)
                tf.touch(release)
                wait_done(offload_assistant, future, timeout=60)
                assert future.result == BIG
                assert context._scatterer.scattered == expected, threshold
            finally:
                executor.shutdown(timeout=60)


def test_closing_with_tasks_in_flight_leaves_nothing_on_your_cluster(
    offload_assistant, shared_dask_cluster, tmp_path
):
    import distributed

    with distributed.Client(shared_dask_cluster, timeout=30, set_as_default=False) as client:
        context = DaskContext(client=client, timeout=30)
        executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
        try:
            array = numpy.ones(BIG)
            started = str(tmp_path / "started")
            running = [submit_progress(executor, tasks.hold_until_cancelled, array, started)
                       for _ in range(3)]
            wait_file(offload_assistant, started, timeout=60)
            assert len(shared_keys(client)) == 1
            context.close()  # the tasks are still running
            for future in running:
                wait_done(offload_assistant, future, timeout=60)
                assert future.state == CANCELLED
            # Your client stays open; what offload scattered through it is gone.
            assert wait_until(lambda: not shared_keys(client)), shared_keys(client)
        finally:
            executor.shutdown(timeout=60)
            context.close()


@pytest.mark.timeout(400)
def test_a_force_cancel_that_restarts_the_holder_does_not_fail_the_others(
    offload_assistant, tmp_path
):
    from offload.api import COMPLETED, EXECUTING

    # One worker: the task force-cancelled runs where the array is kept.
    with DaskContext(n_workers=1, threads_per_worker=1, timeout=30) as context:
        executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
        try:
            array = numpy.full(BIG, 3.0)
            started = str(tmp_path / "started")
            held = submit_call(executor, tasks.hold_ignoring_cancel, array, started)
            queued = submit_call(executor, tasks.total, array)
            wait_file(offload_assistant, started, timeout=60)
            offload_assistant.run_until(held, "state", lambda f: f.state == EXECUTING,
                                        timeout=60)
            assert held.cancel(force=True) is True
            wait_done(offload_assistant, held, timeout=90)
            assert held.state == CANCELLED
            wait_done(offload_assistant, queued, timeout=200)
            assert queued.state == COMPLETED, queued.exception
            assert queued.result == 3.0 * BIG
        finally:
            executor.shutdown(timeout=60)
