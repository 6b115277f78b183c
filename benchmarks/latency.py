"""Round trip of one trivial call: submit, until the main thread sees it done.

Inside a running asyncio loop, one sample is: ``submit_call(executor, noop)``
and an observer of the future's ``done`` (``wait=observe``), timed until
the observer runs on the loop's thread, or ``await future``
(``wait=await``), timed until the awaiting coroutine runs again.  The raw
baselines are timed the same way: until their callback runs, or until a
coroutine awaiting them runs again (one loop turn later).  One call at a time, so this is latency, not throughput.  Each repeat
takes many samples and keeps their median and 90th percentile; the JSON line
gives the median of those over the repeats.  For threads, the raw baseline
is also run with one thread only (``one_thread_*`` fields): the warmed-up
pool's idle threads take turns, each on cold caches, which makes the raw
pool slower than it can be.  With ``--context dask`` it also
times ``DaskContext()`` (embedded ``LocalCluster``) to its first result.

Usage: ``python benchmarks/latency.py [--context thread|process|dask]
[--repeat R] [--quick]``.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import _tasks
from _baselines import ThreadBaseline, bench_session
from _harness import (
    DoneScanner,
    close_loop,
    context_class,
    emit,
    interleave_all,
    make_executor,
    new_loop,
    poll_until,
    result_record,
    run_main,
    run_until,
    shutdown_executor,
)

#: Median round-trip targets in µs (issues 3 and 4).
TARGETS_US = {"thread": 80.0, "process": 400.0}

SAMPLES = {"thread": 2_000, "process": 1_000, "dask": 100}
QUICK_SAMPLES = 20


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def offload_sampler(
    executor: Any, loop: Any, wait: str, submit_call: Any = None
) -> Callable[[], Awaitable[float]]:
    """One round trip; ``submit_call`` of another copy of offload, or ours."""
    if submit_call is None:
        from offload.api import submit_call

    noop = _tasks.noop

    async def observed() -> float:
        waiter = loop.create_future()

        def on_done(event: Any) -> None:
            if event.new and not waiter.done():
                waiter.set_result(time.perf_counter())

        start = time.perf_counter()
        submit_call(executor, noop).observe(on_done, "done")
        return await waiter - start

    async def awaited() -> float:
        start = time.perf_counter()
        await submit_call(executor, noop)
        return time.perf_counter() - start

    return observed if wait == "observe" else awaited


def resumed(round_trip: Callable[[], Awaitable[float]]) -> Callable[[], Awaitable[float]]:
    """A baseline's round trip, timed as ``await future`` is timed.

    The baselines stop the clock in the callback that the worker schedules
    on the loop; an ``await`` resumes its coroutine one loop turn later
    (asyncio wakes a waiting task with ``call_soon``).  Comparing the two
    would charge offload for that turn, ~25 µs here.
    """

    async def one() -> float:
        start = time.perf_counter()
        await round_trip()
        return time.perf_counter() - start

    return one


def sample(loop: Any, one: Callable[[], Awaitable[float]], count: int) -> list[float]:
    """``count`` round trips in µs, one after the other, in the running loop."""

    async def many() -> list[float]:
        return [1e6 * await one() for _ in range(count)]

    gc.collect()
    waiter = asyncio.ensure_future(many(), loop=loop)
    return run_until(loop, waiter)  # type: ignore[no-any-return]


def medians(
    loop: Any, count: int, sampler: Callable[[], Awaitable[float]], p90s: list[float]
) -> Callable[[], float]:
    """A job: ``count`` samples; returns their median, keeps their p90."""

    def run() -> float:
        values = sample(loop, sampler, count)
        p90s.append(percentile(values, 0.9))
        return statistics.median(values)

    return run


def embedded_startup(args: Any) -> None:
    """Seconds from ``DaskContext()`` to the first result, cluster included."""
    from offload.api import submit_call

    cls = context_class("dask")
    runs, closes = [], []
    for _ in range(min(args.repeat, 3)):
        loop = new_loop()
        try:
            start = time.perf_counter()
            context = cls()
            try:
                executor = make_executor(context, loop)
                future = submit_call(executor, _tasks.noop)
                poll_until(loop, DoneScanner([future]))
                runs.append(time.perf_counter() - start)
                if future.state != "completed":
                    raise AssertionError(f"first task ended {future.state!r}")
                shutdown_executor(executor)
            finally:
                closing = time.perf_counter()
                context.close()
                closes.append(time.perf_counter() - closing)
        finally:
            close_loop(loop)
    emit(
        result_record(
            "startup", args, {"measure": "DaskContext() (embedded LocalCluster) to first result"},
            "s", runs, None, None, None, higher_is_better=False,
            close_seconds_median=statistics.median(closes),
        )
    )


def main(args: Any) -> None:
    count = QUICK_SAMPLES if args.quick else SAMPLES[args.context]
    with bench_session(args) as (executor, baseline, loop):
        # Threads: also the raw pool at its fastest, one thread that no
        # burst ever rotated with others (the 54 µs baseline).
        one_thread = ThreadBaseline(loop, max_workers=1) if args.context == "thread" else None
        try:
            for wait in ("observe", "await"):
                measure(args, count, executor, baseline, one_thread, loop, wait)
        finally:
            if one_thread is not None:
                one_thread.close()
    if args.context == "dask":
        embedded_startup(args)


def measure(
    args: Any, count: int, executor: Any, baseline: Any, one_thread: Any, loop: Any, wait: str
) -> None:
    """Interleaved repeats of offload's round trip and the baselines'; one line."""
    p90s: dict[str, list[float]] = {"offload": [], "baseline": [], "one_thread": []}
    timed = (lambda round_trip: round_trip) if wait == "observe" else resumed
    jobs = [
        medians(loop, count, offload_sampler(executor, loop, wait), p90s["offload"]),
        medians(loop, count, timed(baseline.round_trip), p90s["baseline"]),
    ]
    if one_thread is not None:
        jobs.append(medians(loop, count, timed(one_thread.round_trip), p90s["one_thread"]))
    runs, base_runs, *one_thread_runs = interleave_all(args.repeat, jobs)
    extra: dict[str, Any] = {}
    if one_thread_runs:
        one_median = statistics.median(one_thread_runs[0])
        extra = {
            "one_thread_baseline": "ThreadPoolExecutor(max_workers=1) + call_soon_threadsafe",
            "one_thread_baseline_median": one_median,
            "one_thread_baseline_p90": statistics.median(p90s["one_thread"]),
            "one_thread_ratio": statistics.median(runs) / one_median,
            "one_thread_baseline_runs": one_thread_runs[0],
        }
    emit(
        result_record(
            "latency",
            args,
            {
                "wait": wait,
                "samples_per_repeat": count,
                # Where the baselines stop the clock: as offload's does.
                "baseline_timed_until": (
                    "its callback runs" if wait == "observe" else "its awaiting coroutine resumes"
                ),
            },
            "µs (median round trip)",
            runs,
            base_runs,
            baseline.name,
            TARGETS_US.get(args.context),
            higher_is_better=False,
            p90=statistics.median(p90s["offload"]),
            baseline_p90=statistics.median(p90s["baseline"]),
            p90_runs=p90s["offload"],
            **extra,
        )
    )


if __name__ == "__main__":
    run_main("latency", __doc__.splitlines()[0], main)
