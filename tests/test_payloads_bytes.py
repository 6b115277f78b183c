"""Large bytes, bytearray, memoryview and PickleBuffer payloads go through
shared memory too, in both directions, and arrive as the same type.

What a user sees: the worker (or the application) gets a ``bytes`` for a
``bytes``, a writable ``bytearray`` of its own for a ``bytearray``, a
``memoryview`` of the same format, shape and writability for a
``memoryview``, and what pickle gives for a ``PickleBuffer``; a segment is
made for each one at or above the threshold (none below); the arguments
are a snapshot taken at submit; and no segment stays in /dev/shm after a
task ends, a worker dies, a force-cancel, a close, or a killed
application.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
from typing import Any

import pytest

import payload_tasks as tasks
from conftest import wait_done, wait_file
from offload._backends.process import pool as process_pool
from offload._backends.process import segment_cache, shm
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

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs Linux's /dev/shm"),
]

#: 4 MB: above the 1 MiB threshold.
BIG = 4 * 2**20

KINDS = ["bytes", "bytearray", "memoryview", "readonly-memoryview", "picklebuffer"]

#: (type received, read-only) for each kind sent, at or above the threshold.
RECEIVED = {
    "bytes": ("bytes", True),
    "bytearray": ("bytearray", False),
    "memoryview": ("memoryview", False),
    "readonly-memoryview": ("memoryview", True),
    # What pickle gives for an out-of-band writable PickleBuffer: the
    # receiver's buffer itself.
    "picklebuffer": ("PickleBuffer", False),
}


def mapped_segments() -> list[str]:
    """The payload segments this process maps (unlinked ones too)."""
    with open("/proc/self/maps") as maps:
        return sorted({
            line.split()[5] for line in maps
            if "/dev/shm/ofl" in line and "_p" in line.split()[5]
        })


def cached_only() -> bool:
    # The application keeps a few argument segments for reuse until the
    # pool ends; the leak check verifies they go then.
    return len(payload_segments(os.getpid())) <= segment_cache.CACHE_COUNT


@pytest.fixture(params=["forkserver", "spawn", "fork"])
def start_method(request: pytest.FixtureRequest) -> str:
    return request.param


def _executor_maker(offload_assistant: Any, start_method: str | None) -> Any:
    made = []

    def make(max_workers: int = 2) -> Any:
        context = MultiprocessingContext(start_method=start_method)
        executor = TraitsExecutor(
            context=context, event_loop=offload_assistant.event_loop, max_workers=max_workers
        )
        made.append((context, executor))
        return executor

    return make, made


@pytest.fixture
def make_executor(offload_assistant: Any) -> Any:
    """Executors on the default start method."""
    make, made = _executor_maker(offload_assistant, None)
    yield make
    for context, executor in made:
        executor.shutdown(timeout=20)
        context.close()


@pytest.fixture
def executor(make_executor: Any) -> Any:
    return make_executor()


@pytest.fixture
def any_start_executor(offload_assistant: Any, start_method: str) -> Any:
    make, made = _executor_maker(offload_assistant, start_method)
    yield make()
    for context, executor in made:
        executor.shutdown(timeout=20)
        context.close()


@pytest.fixture
def received_segments(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """For each chunk from a worker that came with segments, how many (a
    spy on the application's reader)."""
    counts: list[int] = []
    attach = process_pool.attach

    def spy(listing: Any, *, unlink: bool) -> Any:
        counts.append(len(listing[0]))
        return attach(listing, unlink=unlink)

    monkeypatch.setattr(process_pool, "attach", spy)
    return counts


def check_received(value: Any, kind: str, size: int, fill: int = 7) -> None:
    type_name, readonly = RECEIVED[kind]
    assert type(value).__name__ == type_name
    view = memoryview(value)
    assert (view.nbytes, view.readonly) == (size, readonly)
    assert view[0] == fill and view[-1] == 1
    assert view.tobytes() == tasks.make_buffer("bytes", size, fill)


# Arguments ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_large_buffer_argument_goes_through_shared_memory(
    executor, offload_assistant, kind
):
    future = submit_call(executor, tasks.inspect_buffer, tasks.make_buffer(kind, BIG))
    # Copied into a segment on the submitting thread, not written to the pipe.
    assert payload_segments(os.getpid())
    wait_done(offload_assistant, future)
    seen = future.result
    type_name, readonly = RECEIVED[kind]
    assert (seen["type"], seen["nbytes"], seen["readonly"]) == (type_name, BIG, readonly)
    assert (seen["first"], seen["last"]) == (b"\x07", b"\x01")
    if type_name != "bytes" and type_name != "bytearray":
        # A view of the segment, not a copy.
        assert len(seen["mapped"]) == 1, seen["mapped"]


def test_a_bytearray_argument_is_the_workers_own_and_writable(executor, offload_assistant):
    future = submit_call(executor, tasks.write_into, tasks.make_buffer("bytearray", BIG), 42)
    wait_done(offload_assistant, future)
    assert future.result == 42


def test_a_memoryview_keeps_its_format_and_shape(executor, offload_assistant):
    view = memoryview(bytearray(BIG)).cast("d", (BIG // 8 // 4, 4))
    future = submit_call(executor, tasks.inspect_buffer, view)
    assert payload_segments(os.getpid())
    wait_done(offload_assistant, future)
    seen = future.result
    assert (seen["type"], seen["format"], seen["shape"]) == ("memoryview", "d", view.shape)


def test_a_strided_memoryview_arrives_as_a_contiguous_copy(executor, offload_assistant):
    data = bytearray(range(256)) * (BIG // 128)
    view = memoryview(data)[::2]
    future = submit_call(executor, bytes, view)
    wait_done(offload_assistant, future)
    assert future.result == bytes(view)


def test_a_small_memoryview_is_sent_through_the_pipe(executor, offload_assistant):
    future = submit_call(
        executor, tasks.inspect_buffer, memoryview(bytearray(b"abcd")).cast("i")
    )
    wait_done(offload_assistant, future)
    seen = future.result
    assert (seen["type"], seen["format"], seen["shape"], seen["readonly"]) == (
        "memoryview", "i", (1,), False
    )
    assert seen["mapped"] == []


def test_a_memoryview_of_a_format_that_cannot_be_rebuilt_fails_clearly(
    executor, offload_assistant
):
    import ctypes

    class Pair(ctypes.Structure):
        _fields_ = [("a", ctypes.c_int), ("b", ctypes.c_double)]

    future = submit_call(executor, tasks.inspect_buffer, memoryview((Pair * 2)()))
    wait_done(offload_assistant, future)
    assert future.state == "failed"
    assert "cast('B')" in future.exception[1]


@pytest.mark.parametrize("size_offset", [-1, 0])
def test_the_threshold_is_where_bytes_start_going_through_shared_memory(
    executor, offload_assistant, size_offset
):
    size = shm.THRESHOLD + size_offset
    future = submit_call(executor, len, tasks.make_buffer("bytes", size))
    assert bool(payload_segments(os.getpid())) == (size_offset >= 0)
    wait_done(offload_assistant, future)
    assert future.result == size


@pytest.mark.parametrize("kind", ["bytearray", "memoryview"])
def test_the_argument_is_a_snapshot_taken_at_submit(executor, offload_assistant, kind):
    data = bytearray(BIG)
    argument = data if kind == "bytearray" else memoryview(data)
    future = submit_call(executor, tasks.inspect_buffer, argument)
    assert payload_segments(os.getpid())
    data[0] = 9  # at once, before the worker can have read it
    wait_done(offload_assistant, future)
    assert future.result["first"] == b"\x00"


def test_large_bytes_nested_in_an_argument_go_through_shared_memory(
    executor, offload_assistant
):
    parts = [tasks.make_buffer("bytes", BIG, 3), tasks.make_buffer("bytearray", BIG, 4)]
    future = submit_call(executor, lambda p: [(type(b).__name__, b[0]) for b in p], parts)
    assert len(payload_segments(os.getpid())) >= 2
    wait_done(offload_assistant, future)
    assert future.result == [("bytes", 3), ("bytearray", 4)]


def test_a_lambda_with_large_bytes_goes_through_cloudpickle(executor, offload_assistant):
    offset = 5
    future = submit_call(
        executor, lambda b: (type(b).__name__, len(b) + offset), tasks.make_buffer("bytes", BIG)
    )
    assert payload_segments(os.getpid())
    wait_done(offload_assistant, future)
    assert future.result == ("bytes", BIG + offset)


# Results, progress, iteration items ---------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_large_buffer_result_comes_through_shared_memory(
    executor, offload_assistant, received_segments, kind
):
    future = submit_call(executor, tasks.make_buffer, kind, BIG)
    wait_done(offload_assistant, future)
    check_received(future.result, kind, BIG)
    assert sum(received_segments) == 1, received_segments


def test_a_large_bytes_deep_in_a_result_and_in_slots_comes_through_shared_memory(
    executor, offload_assistant, received_segments
):
    future = submit_call(executor, tasks.deep_bytes, BIG, 12)
    wait_done(offload_assistant, future)
    packed = tasks.dig(future.result)
    assert (packed.name, len(packed.data), packed.data[0]) == ("deep", BIG, 5)
    assert sum(received_segments) == 1, received_segments


def test_a_large_bytes_deep_in_an_argument_goes_through_shared_memory(
    executor, offload_assistant
):
    future = submit_call(executor, lambda v: len(tasks.dig(v).data), tasks.deep_bytes(BIG, 12))
    assert len(payload_segments(os.getpid())) >= 1
    wait_done(offload_assistant, future)
    assert future.result == BIG


def test_a_small_bytes_result_goes_through_the_pipe(
    executor, offload_assistant, received_segments
):
    future = submit_call(executor, tasks.make_buffer, "bytes", 1000)
    wait_done(offload_assistant, future)
    assert future.result == tasks.make_buffer("bytes", 1000)
    assert received_segments == []


def test_a_memoryview_result_is_a_view_of_the_segment_until_dropped(
    executor, offload_assistant
):
    future = submit_call(executor, tasks.make_buffer, "memoryview", BIG)
    wait_done(offload_assistant, future)
    result = future.result
    assert len(mapped_segments()) == 1
    result[0] = 11  # writable: the application's own
    assert result[0] == 11
    del result, future
    gc.collect()  # the future is in reference cycles
    assert wait_until(lambda: not mapped_segments()), mapped_segments()


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview"])
def test_large_buffers_as_progress_and_items_come_through_shared_memory(
    executor, offload_assistant, received_segments, kind
):
    received: list[Any] = []
    progress = submit_progress(executor, tasks.buffers_as_progress, kind, 3, BIG)
    progress.observe(lambda event: received.append(event.new), "progress")
    wait_done(offload_assistant, progress)
    assert progress.result == 3
    for n, value in enumerate(received):
        check_received(value, kind, BIG, n + 2)
    assert len(received) == 3
    items: list[Any] = []
    iteration = submit_iteration(executor, tasks.buffers_as_items, kind, 3, BIG)
    iteration.observe(lambda event: items.append(event.new), "result_event")
    wait_done(offload_assistant, iteration)
    for n, value in enumerate(items):
        check_received(value, kind, BIG, n + 2)
    assert len(items) == 3
    assert sum(received_segments) == 6, received_segments


# Every start method ----------------------------------------------------------------


def test_every_kind_goes_both_ways_on_every_start_method(
    any_start_executor, offload_assistant, received_segments
):
    values = [tasks.make_buffer(kind, BIG) for kind in KINDS]
    future = submit_call(any_start_executor, tasks.echo_buffers, *values)
    # One segment per argument, and one lent for each one's result.
    assert len(payload_segments(os.getpid())) == 2 * len(KINDS)
    wait_done(offload_assistant, future)
    assert future.state == "completed", future.exception
    for kind, value in zip(KINDS, future.result, strict=True):
        check_received(value, kind, BIG)
    assert sum(received_segments) == len(KINDS)


# Crashes, kills, cancels, close ----------------------------------------------------


@pytest.mark.parametrize("end", ["worker killed", "force-cancelled"])
def test_a_task_holding_a_memoryview_that_is_ended_leaves_only_the_cache(
    make_executor, offload_assistant, tmp_path, end
):
    # Its worker killed (the task fails) or the task force-cancelled: only
    # that task ends, the next one runs, and no segment is left but those
    # the application keeps for reuse.
    executor = make_executor(max_workers=1)
    marker = str(tmp_path / "holding")
    held = submit_call(
        executor, tasks.hold_and_wait, tasks.make_buffer("memoryview", BIG), marker
    )
    assert payload_segments(os.getpid())
    wait_file(offload_assistant, marker)
    if end == "worker killed":
        with open(marker) as file:
            os.kill(int(file.read()), signal.SIGKILL)
    else:
        held.cancel(force=True)
    wait_done(offload_assistant, held)
    assert held.state == ("failed" if end == "worker killed" else "cancelled")
    after = submit_call(executor, len, tasks.make_buffer("bytes", BIG))
    wait_done(offload_assistant, after)
    assert after.result == BIG
    assert wait_until(cached_only), payload_segments(os.getpid())


def test_closing_the_context_with_a_task_holding_bytes_leaves_nothing(
    offload_assistant, tmp_path
):
    context = MultiprocessingContext()
    executor = TraitsExecutor(
        context=context, event_loop=offload_assistant.event_loop, max_workers=1
    )
    marker = str(tmp_path / "holding")
    held = submit_call(
        executor, tasks.hold_and_wait, tasks.make_buffer("bytes", BIG), marker
    )
    wait_file(offload_assistant, marker)
    assert payload_segments(os.getpid())
    context.close()  # stops the executor, ends the worker
    offload_assistant.run_until(executor, "stopped", lambda e: e.stopped, timeout=30)
    wait_done(offload_assistant, held)
    assert wait_until(lambda: not payload_segments(os.getpid())), payload_segments(os.getpid())


def test_a_sigkilled_application_leaves_no_bytes_segment(start_method, tmp_path):
    check_sigkilled_application_leaves_no_segment(
        start_method, tmp_path,
        imports="from payload_tasks import make_buffer",
        payload='make_buffer("bytes", 16 * 2**20)',
    )


# Pickling, in this process ----------------------------------------------------------


def test_pickles_without_large_buffers_are_made_as_before():
    from offload._backends.remote import dumps

    value = [b"x" * 1000, bytearray(10), {"a": (1, 2.0)}]
    with shm.Outgoing() as segments:
        data = dumps(value, segments)
    assert not segments
    assert data == pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


@pytest.mark.parametrize("kind", ["memoryview", "readonly-memoryview", "picklebuffer"])
def test_a_received_view_in_a_reference_cycle_frees_its_segment(kind):
    # A future holding a result sits in reference cycles.  Before Python
    # 3.13 the collector could clear the segment's view while the result
    # still exported from it (a crash), and ran the segment's release
    # before it tore the views down (a BufferError).
    from offload._backends.out_of_band import loads_out_of_band
    from offload._backends.remote import dumps

    segments = shm.Outgoing()
    data = dumps([tasks.make_buffer(kind, BIG)], segments)
    data += segments.trailer()
    segments.keep()  # handed over: the receiver unlinks
    body, listing = shm.split(data)
    assert listing is not None
    received = loads_out_of_band(body, shm.attach(listing, unlink=True))
    assert type(received[0]).__name__ == RECEIVED[kind][0]
    assert len(mapped_segments()) == 1
    cycle: list[Any] = [received]
    cycle.append(cycle)
    del received, cycle
    gc.collect()
    assert mapped_segments() == []
