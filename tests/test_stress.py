"""Floods: many progress messages, many short tasks, on every context.

* ``PROGRESS_TOTAL`` progress messages from ``PROGRESS_TASKS`` tasks running
  at once: every message is delivered, each task's in order, before its
  future completes.
* ``SHORT_TASKS`` short tasks through one executor: every future
  completes with its own result; once they are dropped, no future (nor any
  other per-task object) is left alive, and a second batch as large runs
  in the memory the first one left: what the process keeps is a high-water
  mark of its allocator, not a leak.  The figures say how far the resident
  memory came back.

The default run uses small numbers; ``pytest -m stress`` runs the full
sizes (1,000,000 messages; 100,000 tasks).  Each test prints its figures.
"""

from __future__ import annotations

import ctypes
import gc
import time
import tracemalloc
from typing import Any

import psutil
import pytest
from traits.api import HasStrictTraits, Int

from conftest import CONTEXTS, load
from offload.api import (
    COMPLETED,
    AsyncioEventLoop,
    BaseFuture,
    TraitsExecutor,
    submit_call,
    submit_progress,
)
from offload.testing.pytest_plugin import OffloadAssistant
from reliability_tasks import report_many, short_task

PROGRESS_TASKS = 8

#: (default run, stress run).
PROGRESS_TOTAL = (80_000, 1_000_000)
SHORT_TASKS = {"thread": (5_000, 100_000), "process": (3_000, 100_000), "dask": (300, 100_000)}

#: Memory (bytes) a second batch may add to what the first left: allocator
#: slack, not per-task leftovers (100,000 leaked futures would be hundreds
#: of MB).
MEMORY_SLACK = 24 * 2**20

CONTEXT_PARAMS = [
    pytest.param("thread", id="thread"),
    pytest.param("process", id="process", marks=pytest.mark.process),
    pytest.param("dask", id="dask", marks=pytest.mark.dask),
]


class Counter(HasStrictTraits):
    value = Int()


class Harness:
    """A context, an asyncio loop and an executor; released by ``close``."""

    def __init__(self, context_kind: str) -> None:
        self.event_loop = AsyncioEventLoop()
        self.assistant = OffloadAssistant(self.event_loop)
        cls = load(CONTEXTS, context_kind)
        self.context = cls(n_workers=2) if context_kind == "dask" else cls()
        self.executor = TraitsExecutor(context=self.context, event_loop=self.event_loop)
        self.kind = context_kind

    def run_until(self, counter: Counter, target: int, timeout: float) -> None:
        self.assistant.run_until(counter, "value", lambda c: c.value >= target, timeout=timeout)

    def close(self) -> None:
        # Each step even if an earlier one fails, so that one failure does
        # not leave an event loop or a cluster for later tests to trip on.
        try:
            self.executor.shutdown(timeout=30)
        finally:
            try:
                self.context.close()
            finally:
                self.assistant.dispose()
                self.event_loop.close()


class OrderCheck:
    """Checks one task's progress values arrive as 0, 1, 2, ... ."""

    def __init__(self, first: int, counter: Counter) -> None:
        self.next = first
        self.wrong: list[tuple[int, int]] = []
        self.counter = counter

    def __call__(self, event: Any) -> None:
        if event.new != self.next and len(self.wrong) < 10:
            self.wrong.append((self.next, event.new))
        self.next = event.new + 1
        self.counter.value += 1


def flood(context_kind: str, total: int) -> None:
    harness = Harness(context_kind)
    per_task = total // PROGRESS_TASKS
    done = Counter()
    delivered = Counter()
    try:
        start = time.perf_counter()
        checks = []
        futures = []
        for task in range(PROGRESS_TASKS):
            first = task * per_task
            future = submit_progress(harness.executor, report_many, first, per_task)
            check = OrderCheck(first, delivered)
            future.observe(check, "progress")
            future.observe(lambda event: setattr(done, "value", done.value + 1), "done")
            checks.append((check, first))
            futures.append(future)
        harness.run_until(done, PROGRESS_TASKS, timeout=40 + total / 10_000)
        elapsed = time.perf_counter() - start
        for future, (check, first) in zip(futures, checks, strict=True):
            assert future.state == COMPLETED, future.state
            assert future.result == per_task
            assert not check.wrong, f"out of order (expected, got): {check.wrong}"
            # All delivered, and before the future completed.
            assert check.next == first + per_task, (check.next, first + per_task)
        assert delivered.value == per_task * PROGRESS_TASKS
    finally:
        harness.close()
    print(f"\n{context_kind}: {delivered.value:,} progress messages from "
          f"{PROGRESS_TASKS} tasks in {elapsed:.2f} s "
          f"({delivered.value / elapsed:,.0f}/s), all in order")


def rss() -> int:
    """Resident memory now, after a collection and handing free heap back."""
    gc.collect()
    if _trim is not None:
        # glibc keeps freed heap pages unless asked: without this, RSS
        # measures the allocator's high-water mark more than what is live.
        _trim(0)
    return psutil.Process().memory_info().rss


try:
    _trim = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc
    _trim = None


#: Classes with one instance per task (names, so that the check needs
#: neither Dask nor the process context installed).  distributed's own:
#: the client's future and the scheduler's task record.
PER_TASK_CLASSES = {
    "CallFuture", "CallTask", "TaskRunner", "TaskHandle", "ThreadCancelFlag",
    "ProcessCancelFlag", "DaskCancelFlag", "WorkerCancelFlag", "_Job",
    "TaskRecord", "Future", "TaskState",
}


def per_task_objects() -> dict[str, int]:
    """Live objects, by class name, of the classes that exist once per task."""
    gc.collect()
    counts: dict[str, int] = {}
    for obj in gc.get_objects():
        cls = type(obj)
        name = cls.__name__
        if name in PER_TASK_CLASSES and cls.__module__.startswith(("offload", "distributed")):
            counts[name] = counts.get(name, 0) + 1
        elif isinstance(obj, BaseFuture):
            counts[name] = counts.get(name, 0) + 1
    return counts


def wait_until_the_scheduler_forgets(harness: Harness, timeout: float = 60.0) -> None:
    """Wait until the scheduler has released every task (it does so a little
    after the client drops the futures), then empty its debug logs.

    Each of its connections keeps its last 10 message batches (the embedded
    cluster's ``distributed.admin.low-level-log-length``), and a batch to a
    worker holds the tasks it carried: bounded, but alive, so they would
    hide what else keeps a task.
    """
    helper = harness.context._helper
    if helper is not None:
        # The scheduler is in the helper process: ask it there, rather
        # than make a client in this process, whose memory is measured.
        import dask_task_functions as dtf

        def task_count() -> int:
            return helper.call(dtf.scheduler_task_count)

        def empty_logs() -> None:
            helper.call(dtf.empty_message_logs)
    else:
        client = harness.context.client

        def task_count() -> int:
            return client.run_on_scheduler(_scheduler_task_count)

        def empty_logs() -> None:
            client.run_on_scheduler(_empty_message_logs)
    deadline = time.monotonic() + timeout
    while True:
        left = task_count()
        if not left:
            break
        assert time.monotonic() < deadline, f"the scheduler still holds {left} tasks"
        time.sleep(0.05)
    empty_logs()


def _scheduler_task_count(dask_scheduler: Any) -> int:
    return len(dask_scheduler.tasks)


def _empty_message_logs(dask_scheduler: Any) -> None:
    for comms in (dask_scheduler.stream_comms, dask_scheduler.client_comms):
        for comm in comms.values():
            comm.recent_message_log.clear()


def run_batch(harness: Harness, count: int, first: int = 0) -> int:
    """Submit ``count`` short tasks, wait for all, check every result.

    Returns the resident memory while the done futures are still held.
    """
    done = Counter()

    def count_done(event: Any) -> None:
        done.value += 1

    futures = []
    for number in range(first, first + count):
        future = submit_call(harness.executor, short_task, number)
        future.observe(count_done, "done")
        futures.append(future)
    harness.run_until(done, count, timeout=40 + count / RATES[harness.kind])
    wrong = [
        (first + n, f.state) for n, f in enumerate(futures)
        if f.state != COMPLETED or f.result != first + n
    ]
    assert not wrong, wrong[:10]
    return rss()


#: Short tasks per second each context manages at least, here (deadlines).
#: Dask's, alone on 2 cores, was ~250; beside another stress test (``-n
#: 2``) below 150.
RATES = {"thread": 500, "process": 500, "dask": 75}

#: The long runs' timeout; the Dask runs of 100,000 tasks, two or three
#: batches at RATES["dask"], need more.  (Marks of a parameter, not of the
#: function: pytest-timeout takes the function's first.)
STRESS_TIMEOUT = pytest.mark.timeout(1800)
DASK_100K_TIMEOUT = pytest.mark.timeout(3600)


def many_short(context_kind: str, count: int) -> None:
    harness = Harness(context_kind)
    try:
        run_batch(harness, 200)  # warm up: workers started, caches primed
        if context_kind == "dask":
            wait_until_the_scheduler_forgets(harness)
        # Earlier tests may have left some (a Dask task of another
        # cluster, say): count only what this batch adds.
        alive_before = per_task_objects()
        objects_before = len(gc.get_objects())
        before = rss()
        start = time.perf_counter()
        run_batch(harness, count)
        elapsed = time.perf_counter() - start
        if context_kind == "dask":
            wait_until_the_scheduler_forgets(harness)
        after = rss()
        alive = {
            name: count - alive_before.get(name, 0)
            for name, count in per_task_objects().items()
            if count > alive_before.get(name, 0)
        }
        assert not alive, f"per-task objects still alive after the futures were dropped: {alive}"
        # Nothing else grew with the tasks.  Allowed: a few containers grow
        # a little; processes keep one free-list entry per cancel-flag slot
        # used at the peak (reused later); Dask's connections keep their
        # last 10 message batches for debugging (the embedded cluster's
        # distributed.admin.low-level-log-length), hundreds of messages in
        # a burst, so Dask is checked by type only.
        extra_objects = len(gc.get_objects()) - objects_before
        allowed = 2000 + count // 100 + (count if context_kind == "process" else 0)
        if context_kind != "dask":
            assert extra_objects < allowed, (extra_objects, allowed)
        # A second batch reuses the memory of the first: what a run keeps
        # is a high-water mark, not a leak that grows run after run.
        run_batch(harness, count, first=count)
        if context_kind == "dask":
            # As before ``after``: the Dask futures of the last tasks may
            # still be pending in the helper when their futures are done
            # here, and the pool keeps their bookkeeping until then.
            wait_until_the_scheduler_forgets(harness)
        again = rss()
        assert again - after < max(MEMORY_SLACK, (after - before) // 2), (
            f"memory grew by {(again - after) / 2**20:.1f} MB in a second batch "
            f"of {count} tasks (the first left +{(after - before) / 2**20:.1f} MB)"
        )
    finally:
        harness.close()
    print(f"\n{context_kind}: {count:,} short tasks in {elapsed:.2f} s "
          f"({count / elapsed:,.0f}/s); no per-task object left alive; memory "
          f"{(after - before) / 2**20:+.1f} MB after the batch, "
          f"{(again - before) / 2**20:+.1f} MB after a second one")


@pytest.mark.parametrize("context_kind", CONTEXT_PARAMS)
def test_progress_flood_all_delivered_in_order(context_kind: str) -> None:
    flood(context_kind, PROGRESS_TOTAL[0])


@pytest.mark.parametrize("context_kind", CONTEXT_PARAMS)
def test_many_short_tasks_all_done_and_memory_returns(context_kind: str) -> None:
    many_short(context_kind, SHORT_TASKS[context_kind][0])


#: Blocks a burst may leave allocated once its futures are dropped: the
#: executor's fresh dicts, the event loop's handles, a free list or two.
BURST_LEFTOVERS = 200

#: Largest block counted as a hook name of Traits' (see ``method_cache_name``).
NAME_BLOCK = 96


def method_cache_name(trace: tracemalloc.Trace) -> bool:
    """Whether ``trace`` is one of the hook names that Traits' C code makes
    afresh for each object it initialises (a future, made in
    ``function_task.py``) and that CPython's method cache then keeps, up to
    4,096 of them whatever the burst (a small string; only the private
    ``sys._clear_type_cache`` lets them go, and offload calls no private
    API).  A future left alive would leave larger blocks there, and blocks
    made elsewhere (its handle, its task)."""
    frame = trace.traceback[-1]  # the most recent: the traceback runs oldest first
    return trace.size <= NAME_BLOCK and frame.filename.endswith("function_task.py")

#: Allocations that are not the burst's: under pytest-xdist, its messages to
#: the main pytest process are handled by threads of this process (execnet).
#: Found by any frame of the allocation's stack, hence the depth.
NOT_OURS = [
    tracemalloc.Filter(False, "*/execnet/*", all_frames=True),
    tracemalloc.Filter(False, "*/xdist/*", all_frames=True),
]
NOT_OURS_DEPTH = 30


@pytest.mark.parametrize(
    "context_kind",
    [pytest.param("thread", id="thread"),
     pytest.param("process", id="process", marks=pytest.mark.process)],
)
def test_a_burst_of_futures_leaves_nothing_to_pin_its_memory(context_kind: str) -> None:
    # CPython gives one of its 1 MiB arenas back only once every block in
    # it is free, so a few hundred small objects made during a burst and
    # kept afterwards hold on to the burst's memory (12 MB of 20,000
    # futures' 16).  Two were found: the ~800 attribute names that Traits
    # makes afresh per HasTraits object and that CPython's method cache
    # keeps (the executor empties that cache after a burst), and the Empty
    # exception and traceback that each idle worker thread held while it
    # waited for work (it now waits outside the ``except``).  The names are
    # not counted (see ``method_cache_name``): with public APIs only, they
    # stay, ~770 per burst of 2,000 (the test passed in the whole suite
    # only thanks to the tests run before it).
    harness = Harness(context_kind)
    try:
        run_batch(harness, 2_000)  # every worker started, caches primed
        tracemalloc.start(NOT_OURS_DEPTH)
        try:
            run_batch(harness, 2_000)
            gc.collect()
            snapshot = tracemalloc.take_snapshot().filter_traces(NOT_OURS)
            blocks = sum(1 for trace in snapshot.traces if not method_cache_name(trace))
        finally:
            tracemalloc.stop()
    finally:
        harness.close()
    assert blocks < BURST_LEFTOVERS, f"{blocks} blocks allocated in the burst are still alive"


@pytest.mark.stress
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("context_kind", CONTEXT_PARAMS)
def test_million_progress_messages(context_kind: str) -> None:
    flood(context_kind, PROGRESS_TOTAL[1])


@pytest.mark.stress
@pytest.mark.parametrize(
    "context_kind",
    [
        pytest.param("thread", id="thread", marks=STRESS_TIMEOUT),
        pytest.param("process", id="process", marks=[pytest.mark.process, STRESS_TIMEOUT]),
        pytest.param("dask", id="dask", marks=[pytest.mark.dask, DASK_100K_TIMEOUT]),
    ],
)
def test_hundred_thousand_short_tasks(context_kind: str) -> None:
    many_short(context_kind, SHORT_TASKS[context_kind][1])


#: "Back near its start": once the 100,000 futures are done and dropped,
#: at most this share of the memory they took may stay resident (the
#: allocator keeps some; a leak or a held high-water mark keeps it all).
NEAR_START = 0.5


@pytest.mark.stress
@pytest.mark.parametrize(
    "context_kind",
    [
        pytest.param("thread", id="thread", marks=STRESS_TIMEOUT),
        # Was an xfail: each task's concurrent.futures.Future in the
        # process pool (~1 KB with its Condition) made the peak 3.6 KB per
        # outstanding task and the process kept all ~360 MB of it.  With
        # the executor's handle as pool future (a2038d2): ~270 MB peak,
        # ~29 MB kept.
        pytest.param("process", id="process", marks=[pytest.mark.process, STRESS_TIMEOUT]),
        # Was an xfail: with the embedded scheduler and its client in the
        # application's process, once every task was forgotten and no
        # per-task object was alive, CPython still kept the arenas of the
        # burst (20,000 tasks: +186 of +188 MB).  With both in a helper
        # process (DaskContext(), since a0816aa): +525 MB held, +39 MB kept.
        pytest.param(
            "dask", id="dask",
            marks=[pytest.mark.dask, pytest.mark.process, DASK_100K_TIMEOUT],
        ),
    ],
)
def test_memory_back_near_its_start_after_100_000_tasks(context_kind: str) -> None:
    harness = Harness(context_kind)
    try:
        run_batch(harness, 200)
        before = rss()
        peak = run_batch(harness, 100_000)
        if context_kind == "dask":
            wait_until_the_scheduler_forgets(harness)
        after = rss()
    finally:
        harness.close()
    taken, kept = (peak - before) / 2**20, (after - before) / 2**20
    print(f"\n{context_kind}: 100,000 done futures held {taken:+.1f} MB; "
          f"{kept:+.1f} MB stayed once they were dropped")
    assert kept < max(16.0, NEAR_START * taken), f"{kept:.1f} of {taken:.1f} MB stayed"
