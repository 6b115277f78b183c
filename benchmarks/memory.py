"""Memory kept by finished futures, and per-submit cost as futures pile up.

Each repeat runs in a fresh child process (so one repeat's heap does not
colour the next), alternately for offload and for the raw baseline.  The
child warms its executor up, then:

1. ``gc.collect()``, RSS *before*;
2. submits 20,000 trivial calls while the loop is not running, so every
   future is still outstanding when the next is submitted, timing each
   submit; then runs the loop until all are done;
3. ``gc.collect()``, RSS with the 20,000 finished futures *kept*;
4. drops them, ``gc.collect()``, RSS *dropped*.

Then a second batch the same way: how much RSS grew from the first batch
to the second (memory reused, or leaked?); and a third, traced by
``tracemalloc``: bytes kept per finished future, and bytes left behind per
future once dropped (a leak shows here, whatever the allocator keeps).

Two JSON lines: ``memory`` (RSS dropped - before, MB; target: within 10 MB;
with the figures above) and ``submit_cost`` (median µs per submit in the
last fifth of the batch divided by the first fifth: stays near 1 when the
cost of a submit does not grow with the outstanding futures; our criterion
for "does not grow" is <= 1.5; the ratio of means is given too).

Usage: ``python benchmarks/memory.py [--context thread|process|dask]
[--repeat R] [--quick]``.
"""

from __future__ import annotations

import argparse
import array
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from typing import Any

import _tasks
from _baselines import make_baseline
from _harness import (
    WAIT_TIMEOUT,
    DoneScanner,
    Skip,
    close_loop,
    emit,
    interleave,
    make_executor,
    new_loop,
    open_context,
    poll_until,
    register_tasks_by_value,
    result_record,
    rss_bytes,
    run_main,
    shutdown_executor,
)

TASKS = {"thread": 20_000, "process": 20_000, "dask": 5_000}
QUICK_TASKS = {"thread": 1_000, "process": 1_000, "dask": 200}
MB = 1024 * 1024

#: Targets (issue 3): memory back within 10 MB; our bound on submit growth.
MEMORY_TARGET_MB = 10.0
GROWTH_TARGET = 1.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--child", choices=["offload", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--tasks", type=int, help=argparse.SUPPRESS)


def measure(submit_all: Any, wait_all: Any, n: int) -> dict[str, float]:
    """The child's job; ``submit_all(n, times)`` returns what it keeps.

    A first batch measures RSS and per-submit times; a second, traced by
    ``tracemalloc`` (which would distort the times), measures the bytes each
    finished future keeps and leaves behind, and shows whether RSS grows
    from one batch to the next.
    """
    times = array.array("d", bytes(8 * n))
    gc.collect()
    before = rss_bytes()
    blocks_before = sys.getallocatedblocks()
    kept = submit_all(n, times)
    wait_all(kept)
    gc.collect()
    with_kept = rss_bytes()
    del kept
    gc.collect()
    dropped = rss_bytes()
    blocks_dropped = sys.getallocatedblocks()

    # Second batch, untraced: is the memory of the first one reused?
    kept = submit_all(n, None)
    wait_all(kept)
    del kept
    gc.collect()
    second_dropped = rss_bytes()

    # Third batch, traced (tracemalloc's own bookkeeping inflates RSS, so
    # no RSS figure is taken from here on).
    tracemalloc.start()
    kept = submit_all(n, None)
    wait_all(kept)
    gc.collect()
    traced_kept = tracemalloc.get_traced_memory()[0]
    del kept
    gc.collect()
    traced_left = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()

    fifth = n // 5
    first, last = times[:fifth], times[-fifth:]
    return {
        "returned_mb": (dropped - before) / MB,
        "rss_before_mb": before / MB,
        "rss_kept_mb": with_kept / MB,
        "rss_dropped_mb": dropped / MB,
        "rss_second_batch_growth_mb": (second_dropped - dropped) / MB,
        "blocks_left_per_future": (blocks_dropped - blocks_before) / n,
        "kept_per_future_kb": traced_kept / n / 1024,
        "left_per_future_bytes": traced_left / n,
        "submit_first_fifth_us": 1e6 * statistics.fmean(first),
        "submit_last_fifth_us": 1e6 * statistics.fmean(last),
        "submit_first_fifth_median_us": 1e6 * statistics.median(first),
        "submit_last_fifth_median_us": 1e6 * statistics.median(last),
    }


def child(args: argparse.Namespace) -> None:
    from offload.api import submit_call

    register_tasks_by_value()
    loop = new_loop()
    try:
        with open_context(args.context) as (context, parts):
            if args.child == "baseline":
                baseline = make_baseline(args.context, loop, parts)
                try:
                    baseline.calls(50)
                    result = measure(baseline.submit_calls, baseline.wait_calls, args.tasks)
                finally:
                    baseline.close()
            else:
                executor = make_executor(context, loop)
                try:
                    noop = _tasks.noop

                    def submit_all(n: int, times: Any) -> list:
                        futures = []
                        append = futures.append
                        clock = time.perf_counter
                        if times is None:
                            return [submit_call(executor, noop) for _ in range(n)]
                        for i in range(n):
                            start = clock()
                            append(submit_call(executor, noop))
                            times[i] = clock() - start
                        return futures

                    def wait_all(futures: list) -> None:
                        poll_until(loop, DoneScanner(futures))

                    warm = submit_all(50, array.array("d", bytes(8 * 50)))
                    wait_all(warm)
                    del warm
                    result = measure(submit_all, wait_all, args.tasks)
                finally:
                    shutdown_executor(executor)
    finally:
        close_loop(loop)
    print(json.dumps(result), flush=True)


def run_child(args: argparse.Namespace, which: str, n: int) -> dict[str, float]:
    command = [sys.executable, os.path.abspath(__file__), "--context", args.context,
               "--child", which, "--tasks", str(n)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=WAIT_TIMEOUT)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"memory child {which} failed:\n{done.stdout}\n{done.stderr}")
    record = json.loads(lines[-1])
    if "skipped" in record:
        raise Skip(record["skipped"])
    return record  # type: ignore[no-any-return]


def main(args: argparse.Namespace) -> None:
    if args.child:
        child(args)
        return
    n = (QUICK_TASKS if args.quick else TASKS)[args.context]
    results: dict[str, list[dict[str, float]]] = {"offload": [], "baseline": []}

    def job(which: str) -> Any:
        def run() -> float:
            results[which].append(run_child(args, which, n))
            return 0.0

        return run

    interleave(args.repeat, job("offload"), job("baseline"))

    def med(which: str, key: str) -> float:
        return statistics.median(r[key] for r in results[which])

    def runs(which: str, key: str) -> list[float]:
        return [r[key] for r in results[which]]

    details = {key: med("offload", key) for key in results["offload"][0]}
    base_details = {f"baseline_{key}": med("baseline", key) for key in results["baseline"][0]}
    name = {"thread": "ThreadPoolExecutor futures kept",
            "process": "ProcessPoolExecutor futures kept",
            "dask": "raw client.submit futures kept"}[args.context]
    record = result_record(
        "memory", args, {"tasks": n, "measure": "RSS after dropping - before"}, "MB",
        runs("offload", "returned_mb"), runs("baseline", "returned_mb"), name,
        MEMORY_TARGET_MB, higher_is_better=False, **details, **base_details,
    )
    record["ratio"] = None  # a ratio of two near-zero deltas means nothing
    emit(record)

    def growth(which: str, statistic: str = "median_") -> list[float]:
        return [r[f"submit_last_fifth_{statistic}us"] / r[f"submit_first_fifth_{statistic}us"]
                for r in results[which]]

    # The criterion uses each fifth's median submit: the mean also carries
    # the 5 ms GIL slices that worker threads take at random moments and
    # the cyclic GC's passes (both given below, as ``mean_ratio``).
    emit(
        result_record(
            "submit_cost", args,
            {"tasks": n, "measure": "median submit, last fifth / first fifth"},
            "ratio", growth("offload"), growth("baseline"), name,
            GROWTH_TARGET, higher_is_better=False,
            submit_first_fifth_median_us=details["submit_first_fifth_median_us"],
            submit_last_fifth_median_us=details["submit_last_fifth_median_us"],
            mean_ratio=statistics.median(growth("offload", "")),
            baseline_mean_ratio=statistics.median(growth("baseline", "")),
            submit_first_fifth_mean_us=details["submit_first_fifth_us"],
            submit_last_fifth_mean_us=details["submit_last_fifth_us"],
            baseline_submit_first_fifth_median_us=base_details[
                "baseline_submit_first_fifth_median_us"],
            baseline_submit_last_fifth_median_us=base_details[
                "baseline_submit_last_fifth_median_us"],
        )
    )


if __name__ == "__main__":
    run_main("memory", __doc__.splitlines()[0], main, add_arguments)
