"""Floods: many progress messages, many short tasks, on every context.

* ``PROGRESS_TOTAL`` progress messages from ``PROGRESS_TASKS`` tasks running
  at once: every message is delivered, each task's in order, before its
  future completes.
* ``SHORT_TASKS`` short tasks through one executor: every future
  completes with its own result; once they are dropped, no future is left
  alive and the process's memory is back near where it started.

The default run uses small numbers; ``pytest -m stress`` runs the full
sizes (1,000,000 messages; 100,000 tasks).  Each test prints its figures.
"""

from __future__ import annotations

import gc
import time
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
SHORT_TASKS = {"thread": (5_000, 100_000), "process": (3_000, 100_000), "dask": (500, 100_000)}

#: Memory (bytes) the process may keep after the short tasks, beyond what
#: it had after a warm-up: allocator slack, not per-task leftovers (100,000
#: leaked futures would be hundreds of MB).
MEMORY_SLACK = 40 * 2**20

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

    def run_until(self, counter: Counter, target: int, timeout: float) -> None:
        self.assistant.run_until(counter, "value", lambda c: c.value >= target, timeout=timeout)

    def close(self) -> None:
        try:
            self.executor.shutdown(timeout=30)
        finally:
            self.context.close()
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
    gc.collect()
    return psutil.Process().memory_info().rss


def many_short(context_kind: str, count: int) -> None:
    harness = Harness(context_kind)
    done = Counter()

    def count_done(event: Any) -> None:
        done.value += 1

    try:
        # Warm up: workers started, code paths and caches primed.
        warm = [submit_call(harness.executor, short_task, i) for i in range(200)]
        for future in warm:
            future.observe(count_done, "done")
        harness.run_until(done, len(warm), timeout=60)
        del warm, future
        before = rss()
        done.value = 0
        start = time.perf_counter()
        futures = []
        for number in range(count):
            future = submit_call(harness.executor, short_task, number)
            future.observe(count_done, "done")
            futures.append(future)
        harness.run_until(done, count, timeout=40 + count / 500)
        elapsed = time.perf_counter() - start
        peak = rss()
        wrong = [
            (n, f.state) for n, f in enumerate(futures)
            if f.state != COMPLETED or f.result != n
        ]
        assert not wrong, wrong[:10]
        del futures, future
        after = rss()
        alive = sum(1 for obj in gc.get_objects() if isinstance(obj, BaseFuture))
        assert alive == 0, f"{alive} futures still alive after they were dropped"
        assert after - before < MEMORY_SLACK, (
            f"memory grew by {(after - before) / 2**20:.1f} MB over {count} tasks "
            f"(peak +{(peak - before) / 2**20:.1f} MB)"
        )
    finally:
        harness.close()
    print(f"\n{context_kind}: {count:,} short tasks in {elapsed:.2f} s "
          f"({count / elapsed:,.0f}/s); memory +{(peak - before) / 2**20:.1f} MB "
          f"at the peak, +{(after - before) / 2**20:.1f} MB after")


@pytest.mark.parametrize("context_kind", CONTEXT_PARAMS)
def test_progress_flood_all_delivered_in_order(context_kind: str) -> None:
    flood(context_kind, PROGRESS_TOTAL[0])


@pytest.mark.parametrize("context_kind", CONTEXT_PARAMS)
def test_many_short_tasks_all_done_and_memory_returns(context_kind: str) -> None:
    many_short(context_kind, SHORT_TASKS[context_kind][0])


@pytest.mark.stress
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("context_kind", CONTEXT_PARAMS)
def test_million_progress_messages(context_kind: str) -> None:
    flood(context_kind, PROGRESS_TOTAL[1])


@pytest.mark.stress
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("context_kind", CONTEXT_PARAMS)
def test_hundred_thousand_short_tasks(context_kind: str) -> None:
    many_short(context_kind, SHORT_TASKS[context_kind][1])
