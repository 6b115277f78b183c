"""Large arrays to and from worker processes go through shared memory.

What a user sees: results, progress arrays and iteration items arrive
intact; the worker maps its arguments instead of reading them from a
pipe; the arguments are a snapshot taken at submit; and no segment stays
in /dev/shm after a task ends, a worker dies, the context closes or the
application is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

import payload_tasks as tasks
from conftest import wait_done, wait_file
from offload.api import (
    MultiprocessingContext,
    TraitsExecutor,
    submit_call,
    submit_iteration,
    submit_progress,
)
from payload_checks import (
    check_sigkilled_application_leaves_no_segment,
    payload_segments,
    wait_until,
)

numpy = pytest.importorskip("numpy")

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs Linux's /dev/shm"),
]

#: Elements of a float64 array of 4 MB: above the 1 MiB threshold.
BIG = 500_000


@pytest.fixture(params=["forkserver", "spawn", "fork"])
def start_method(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_executor(offload_assistant: Any, start_method: str) -> Any:
    made = []

    def make(max_workers: int = 2) -> Any:
        context = MultiprocessingContext(start_method=start_method)
        executor = TraitsExecutor(
            context=context, event_loop=offload_assistant.event_loop, max_workers=max_workers
        )
        made.append((context, executor))
        return executor

    yield make
    for context, executor in made:
        executor.shutdown(timeout=20)
        context.close()


@pytest.fixture
def executor(make_executor: Any) -> Any:
    return make_executor()


def test_a_large_argument_is_mapped_by_the_worker_not_read_from_the_pipe(
    executor, offload_assistant
):
    array = numpy.arange(BIG, dtype=float)
    future = submit_call(executor, tasks.describe, array)
    wait_done(offload_assistant, future)
    total, writable, mapped = future.result
    assert total == array.sum()
    # The worker's own snapshot: it may write to it.
    assert writable
    assert len(mapped) == 1, mapped


def test_a_small_argument_goes_through_the_pipe(executor, offload_assistant):
    future = submit_call(executor, tasks.describe, numpy.arange(1000, dtype=float))
    wait_done(offload_assistant, future)
    assert future.result[2] == []


def test_a_large_result_arrives_writable_and_nothing_is_left(executor, offload_assistant):
    array = numpy.arange(BIG, dtype=float)
    future = submit_call(executor, tasks.negate, array)
    wait_done(offload_assistant, future)
    result = future.result
    assert numpy.array_equal(result, -array)
    result[0] = 7.0  # the application's alone
    pid = os.getpid()
    assert wait_until(lambda: not payload_segments(pid) or _cached_only(pid))


def _cached_only(pid: int) -> bool:
    # The application keeps a few argument segments for reuse until the
    # pool ends; the leak check verifies they go then.
    from offload._backends.process import segment_cache

    return len(payload_segments(pid)) <= segment_cache.CACHE_COUNT


def test_the_argument_is_a_snapshot_taken_at_submit(executor, offload_assistant):
    array = numpy.zeros(BIG)
    future = submit_call(executor, tasks.describe, array)
    array[:] = 1.0  # at once, before the worker can have read it
    wait_done(offload_assistant, future)
    assert future.result[0] == 0.0


def test_many_large_arguments_in_a_row_each_arrive_intact(make_executor, offload_assistant):
    executor = make_executor(max_workers=1)
    futures = [
        submit_call(executor, tasks.first, numpy.full(BIG, float(n))) for n in range(6)
    ]
    for future in futures:
        wait_done(offload_assistant, future)
    assert [future.result for future in futures] == [float(n) for n in range(6)]


def test_an_argument_a_task_kept_is_not_overwritten_by_the_next(
    make_executor, offload_assistant
):
    executor = make_executor(max_workers=1)
    kept = submit_call(executor, tasks.keep, numpy.full(BIG, 1.0))
    wait_done(offload_assistant, kept)
    # Same size: it would reuse the segment of the kept argument.
    later = submit_call(executor, tasks.first, numpy.full(BIG, 2.0))
    wait_done(offload_assistant, later)
    check = submit_call(executor, tasks.kept_first)
    wait_done(offload_assistant, check)
    assert (kept.result, later.result, check.result) == (1.0, 2.0, 1.0)


def test_large_progress_arrays_and_iteration_items_arrive(executor, offload_assistant):
    received = []
    progress = submit_progress(executor, tasks.arrays_as_progress, 3, BIG)
    progress.observe(lambda event: received.append(float(event.new[0])), "progress")
    wait_done(offload_assistant, progress)
    assert progress.result == 3
    assert received == [0.0, 1.0, 2.0]
    items = []
    iteration = submit_iteration(executor, tasks.arrays_as_items, 3, BIG)
    iteration.observe(lambda event: items.append(event.new), "result_event")
    wait_done(offload_assistant, iteration)
    assert [float(item[-1]) for item in items] == [0.0, 1.0, 2.0]
    assert all(item.shape == (BIG,) for item in items)


def test_a_lambda_with_a_large_argument_goes_through_cloudpickle(executor, offload_assistant):
    array = numpy.ones(BIG)
    future = submit_call(executor, lambda a: float(a.sum()), array)
    wait_done(offload_assistant, future)
    assert future.result == float(BIG)


def test_a_worker_that_dies_with_a_result_in_shared_memory_leaves_nothing(
    make_executor, offload_assistant
):
    executor = make_executor(max_workers=1)
    first = submit_call(executor, tasks.pid)
    wait_done(offload_assistant, first)
    worker = first.result
    future = submit_call(executor, tasks.segment_then_die, 4 * 2**20)
    wait_done(offload_assistant, future)
    assert future.state == "failed"
    assert "SIGKILL" in future.exception[1]
    assert wait_until(lambda: not payload_segments(worker)), payload_segments(worker)


def test_a_worker_killed_while_it_maps_an_argument_fails_only_its_task(
    make_executor, offload_assistant, tmp_path
):
    executor = make_executor(max_workers=1)
    marker = str(tmp_path / "holding")
    held = submit_call(executor, tasks.hold_and_wait, numpy.ones(BIG), marker)
    wait_file(offload_assistant, marker)
    with open(marker) as file:
        os.kill(int(file.read()), signal.SIGKILL)
    wait_done(offload_assistant, held)
    assert held.state == "failed"
    after = submit_call(executor, tasks.first, numpy.full(BIG, 3.0))
    wait_done(offload_assistant, after)
    assert after.result == 3.0


def test_a_sigkilled_application_leaves_no_segment(start_method, tmp_path):
    check_sigkilled_application_leaves_no_segment(
        start_method, tmp_path, imports="import numpy", payload="numpy.ones(2_000_000)"
    )


def test_results_held_by_the_application_are_never_overwritten(
    make_executor, offload_assistant
):
    # Segments are reused and lent to workers for results: none that backs
    # an array the application still holds.
    executor = make_executor(max_workers=1)
    results = []
    for n in range(6):
        future = submit_call(executor, tasks.negate, numpy.full(BIG, float(n)))
        wait_done(offload_assistant, future)
        results.append(future.result)
        if n % 2:
            results[-1] = None  # dropped: its segment may be reused
    kept = [(n, r) for n, r in enumerate(results) if r is not None]
    assert [(n, float(r[0]), float(r[-1])) for n, r in kept] == [
        (n, -float(n), -float(n)) for n, _ in kept
    ]


# shared_array -------------------------------------------------------------


def test_a_shared_array_is_the_same_memory_in_the_worker(executor, offload_assistant):
    from offload.api import shared_array

    array = shared_array((1000, 50))
    array[:] = 1.0
    # A strided view: still shared, not copied.
    future = submit_call(executor, tasks.fill, array[::2], 3.0)
    wait_done(offload_assistant, future)
    assert len(future.result) == 1, future.result
    assert float(array[0, 0]) == 3.0 and float(array[1, 0]) == 1.0
    assert float(array[::2].sum()) == 3.0 * 500 * 50


def test_a_small_shared_array_is_shared_too(executor, offload_assistant):
    from offload.api import shared_array

    array = shared_array(10, "int32")
    future = submit_call(executor, tasks.fill, array, 7)
    wait_done(offload_assistant, future)
    assert array.tolist() == [7] * 10


def test_a_shared_array_dropped_after_submit_still_reaches_the_worker(
    executor, offload_assistant
):
    from offload.api import shared_array

    array = shared_array(BIG)
    array[:] = 2.0
    future = submit_call(executor, tasks.describe, array)
    del array
    wait_done(offload_assistant, future)
    assert future.result[0] == 2.0 * BIG


def test_a_worker_returns_a_shared_array_it_made_and_the_application_owns_it(
    executor, offload_assistant
):
    future = submit_call(executor, tasks.make_shared, BIG, 4.0)
    wait_done(offload_assistant, future)
    result = future.result
    assert float(result.sum()) == 4.0 * BIG
    result[0] = 0.0  # the application's now
    del result, future


def test_a_shared_array_sent_back_by_the_worker_is_the_same_memory(
    executor, offload_assistant
):
    from offload.api import shared_array

    array = shared_array(BIG)
    future = submit_call(executor, tasks.same_back, array)
    wait_done(offload_assistant, future)
    back = future.result
    assert float(array[0]) == -1.0
    back[1] = 5.0
    assert float(array[1]) == 5.0


def test_shared_array_rejects_a_bad_shape():
    from offload.api import shared_array

    with pytest.raises(ValueError, match="shape must be"):
        shared_array((2, -1))


def test_the_process_backend_imports_no_numpy_code_of_its_own():
    # NumPy stays optional: only shared_array (or receiving a shared array)
    # loads the module that imports it.
    code = (
        "import sys\n"
        "import offload.api\n"
        "from offload._backends.process import pool, worker, shm, segment_cache\n"
        "print('offload._backends.process.shared_array' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "False", done.stderr


def test_closing_the_context_with_a_task_holding_an_argument_leaves_nothing(
    offload_assistant, tmp_path
):
    context = MultiprocessingContext()
    executor = TraitsExecutor(
        context=context, event_loop=offload_assistant.event_loop, max_workers=1
    )
    marker = str(tmp_path / "holding")
    held = submit_call(executor, tasks.hold_and_wait, numpy.ones(BIG), marker)
    wait_file(offload_assistant, marker)
    assert payload_segments(os.getpid())
    context.close()  # stops the executor, ends the worker
    offload_assistant.run_until(executor, "stopped", lambda e: e.stopped, timeout=30)
    wait_done(offload_assistant, held)
    assert wait_until(lambda: not payload_segments(os.getpid())), payload_segments(os.getpid())


# A worker's mappings, kept between items ------------------------------------------


def worker_maps(pid: int) -> list[str]:
    """The payload segments worker ``pid`` maps now, unlinked or not."""
    with open(f"/proc/{pid}/maps") as maps:
        paths = {line.split()[5] for line in maps if len(line.split()) > 5}
    return sorted(p for p in paths if p.startswith("/dev/shm/ofl") and "_p" in p)


def test_a_worker_keeps_its_mapping_of_an_argument_for_the_next_item(
    make_executor, offload_assistant
):
    # The application reuses the segment for its next large argument; the
    # worker then reads it through the mapping it has, without faults.
    executor = make_executor(max_workers=1)
    array = numpy.arange(BIG, dtype=float)
    for expected in (array.sum(), 2 * array.sum()):
        future = submit_call(executor, tasks.describe, array)
        wait_done(offload_assistant, future)
        assert future.result[0] == expected
        array *= 2
    after = submit_call(executor, tasks.shm_mappings)
    wait_done(offload_assistant, after)
    # One segment, used by both items, still mapped after them, and still
    # the application's (kept for reuse).
    assert len(future.result[2]) == 1
    assert after.result == future.result[2]
    assert after.result[0].rsplit("/", 1)[1] in payload_segments(os.getpid())


def test_a_worker_unmaps_a_kept_segment_soon_after_the_application_drops_it(
    make_executor, offload_assistant, monkeypatch
):
    # Its mapping would keep the memory of a segment nobody can name.
    from offload._backends.process import segment_cache

    monkeypatch.setattr(segment_cache, "CACHE_COUNT", 0)  # nothing is kept for reuse
    executor = make_executor(max_workers=1)
    started = submit_call(executor, tasks.pid)
    wait_done(offload_assistant, started)
    future = submit_call(executor, tasks.describe, numpy.ones(BIG))
    wait_done(offload_assistant, future)
    assert future.result[0] == BIG
    assert wait_until(lambda: not payload_segments(os.getpid()), 10)
    # No item comes: the worker's watchdog thread looks twice a second.
    assert wait_until(lambda: not worker_maps(started.result), 5), worker_maps(started.result)
