"""Trivial ``submit_call`` throughput: submit N, then wait until all are done.

Measures tasks/s from the first submit until the main thread (the asyncio
loop) has seen every future done, for N = 5,000 and 20,000 (Dask: 1,000 and
5,000), in two ways of waiting:

``poll``
    no observer per future; the loop checks the futures' ``done`` trait in
    order every 0.5 ms (amortised O(1)).
``observe``
    one ``done`` observer per future, as a GUI that lists its jobs would.

Every configuration is measured against the raw pool in the same run
(``baseline``, ``ratio``).  ``observe`` is also measured, interleaved with
those two, against the raw pool plus one plain Traits ``HasTraits`` per task
with one ``observe`` observer on its ``done``, set on the loop's thread when
the task ends (threads and processes; see ``_baselines.py``): what Traits'
own observer per task costs without offload.  Its record adds
``traits_baseline`` (that reference's description), ``traits_baseline_median``,
``traits_baseline_runs`` and ``traits_ratio`` (offload's median over the
reference's); these are None where it is not measured (Dask).  ``met`` still
compares with the targets only.

Usage: ``python benchmarks/calls.py [--context thread|process|dask]
[--repeat R] [--quick]``.  Prints one JSON line per (N, wait).
"""

from __future__ import annotations

import functools
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import _tasks
from _baselines import bench_session
from _harness import (
    DoneScanner,
    emit,
    interleave_all,
    poll_until,
    result_record,
    run_main,
    run_until,
)

#: Targets in tasks/s (issues 3 and 4); Dask's is a ratio to raw client.submit.
TARGETS = {"thread": 20_000, "process": 7_500}
TARGET_RATIOS = {"dask": 0.5}

SIZES = {"thread": [5_000, 20_000], "process": [5_000, 20_000], "dask": [1_000, 5_000]}
QUICK_SIZES = [200]


def offload_calls(executor: Any, loop: Any, n: int, wait: str) -> float:
    """Seconds to submit ``n`` trivial calls and see them all done."""
    from offload.api import submit_call

    noop = _tasks.noop
    gc.collect()
    if wait == "poll":
        start = time.perf_counter()
        futures = [submit_call(executor, noop) for _ in range(n)]
        poll_until(loop, DoneScanner(futures))
        return time.perf_counter() - start
    waiter = loop.create_future()
    remaining = [n]

    def on_done(event: Any) -> None:
        remaining[0] -= 1
        if not remaining[0]:
            waiter.set_result(None)

    start = time.perf_counter()
    for _ in range(n):
        submit_call(executor, noop).observe(on_done, "done")
    run_until(loop, waiter)
    return time.perf_counter() - start


def rate(n: int, timed: Callable[[], float]) -> Callable[[], float]:
    """A job giving tasks/s from ``timed()``, seconds for ``n`` tasks."""
    return lambda: n / timed()


def traits_reference(
    runs: list[float], traits_runs: list[float] | None, name: str | None
) -> dict[str, Any]:
    """The record's fields for the raw pool + Traits-observe reference."""
    median = statistics.median(traits_runs) if traits_runs else None
    return {
        "traits_baseline": name,
        "traits_baseline_median": median,
        "traits_baseline_runs": traits_runs,
        "traits_ratio": statistics.median(runs) / median if median else None,
    }


def main(args: Any) -> None:
    sizes = QUICK_SIZES if args.quick else SIZES[args.context]
    with bench_session(args) as (executor, baseline, loop):
        for n in sizes:
            for wait in ("poll", "observe"):
                jobs = [
                    rate(n, functools.partial(offload_calls, executor, loop, n, wait)),
                    rate(n, functools.partial(baseline.calls, n)),
                ]
                # Observed calls: also the raw pool + one Traits observer per
                # task, in the same rotation.
                traits = wait == "observe" and baseline.traits_name is not None
                if traits:
                    jobs.append(rate(n, functools.partial(baseline.traits_calls, n)))
                runs, base_runs, *rest = interleave_all(args.repeat, jobs)
                extra: dict[str, Any] = {}
                if wait == "observe":
                    traits_runs = rest[0] if rest else None
                    extra = traits_reference(runs, traits_runs, baseline.traits_name)
                emit(
                    result_record(
                        "calls",
                        args,
                        {"tasks": n, "wait": wait},
                        "tasks/s",
                        runs,
                        base_runs,
                        baseline.name,
                        TARGETS.get(args.context),
                        target_ratio=TARGET_RATIOS.get(args.context),
                        **extra,
                    )
                )


if __name__ == "__main__":
    run_main("calls", __doc__.splitlines()[0], main)
