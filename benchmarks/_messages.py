"""The job ``progress.py`` and ``iteration.py`` share: stream messages from
tasks to observers on the main thread, check that none is lost or reordered,
and time it.
"""

from __future__ import annotations

import argparse
import functools
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import _tasks
from _baselines import OrderChecker, bench_session, finish
from _harness import DoneScanner, emit, interleave, poll_until, result_record, run_until

#: Targets in messages/s delivered on the main thread (issues 3, 4 and 6).
TARGETS = {"thread": 227_000, "process": 100_000, "dask": 100_000}

#: Messages per configuration: (tasks in parallel, messages per task); the
#: baseline streams the same messages from as many tasks.
CONFIGS = [(1, 200_000), (4, 50_000)]
QUICK_CONFIGS = [(1, 2_000), (2, 1_000)]

#: kind -> (submit function name, worker function, trait fired per message).
KINDS = {
    "progress": ("submit_progress", _tasks.report_progress, "progress"),
    "iteration": ("submit_iteration", _tasks.generate, "result_event"),
}


def offload_messages(
    executor: Any, loop: Any, kind: str, tasks: int, count: int
) -> tuple[float, float]:
    """Stream ``0 .. count-1`` from each of ``tasks`` parallel tasks to a
    ``future.observe`` observer on the main thread.

    Returns (messages/s from the first submit to the last message
    delivered, main-thread CPU µs per message).  Then waits for every
    future to complete, and checks that nothing was lost or reordered.
    """
    import offload.api

    submit_name, function, trait = KINDS[kind]
    submit = getattr(offload.api, submit_name)
    checkers = [OrderChecker(count, loop.create_future()) for _ in range(tasks)]
    gc.collect()
    cpu = time.thread_time()
    start = time.perf_counter()
    futures = []
    for checker in checkers:
        future = submit(executor, function, count)

        def observer(event: Any, checker: OrderChecker = checker) -> None:
            checker(event.new)

        future.observe(observer, trait)
        futures.append(future)
    for checker in checkers:
        run_until(loop, checker.waiter)
    result = finish(checkers, start, cpu)
    poll_until(loop, DoneScanner(futures))
    for future in futures:
        if future.state != "completed":
            raise AssertionError(f"a message task ended {future.state!r}, not completed")
    return result


def keep_cpu(
    store: list[float], stream: Callable[[], tuple[float, float]]
) -> Callable[[], float]:
    """A job returning ``stream()``'s rate; its CPU figure goes to ``store``."""

    def run() -> float:
        rate, cpu_us = stream()
        store.append(cpu_us)
        return rate

    return run


def main(kind: str, args: argparse.Namespace) -> None:
    configs = QUICK_CONFIGS if args.quick else CONFIGS
    with bench_session(args) as (executor, baseline, loop):
        for tasks, count in configs:
            cpu: dict[str, list[float]] = {"offload": [], "baseline": []}

            runs, base_runs = interleave(
                args.repeat,
                keep_cpu(cpu["offload"], functools.partial(
                    offload_messages, executor, loop, kind, tasks, count)),
                keep_cpu(cpu["baseline"], functools.partial(baseline.messages, tasks, count)),
            )
            emit(
                result_record(
                    kind,
                    args,
                    {"tasks": tasks, "messages_per_task": count},
                    "messages/s",
                    runs,
                    base_runs,
                    baseline.name,
                    TARGETS.get(args.context),
                    verified="all messages delivered, in order, per task",
                    observer="future.observe(handler, trait): one Traits observer "
                    "per future; the baseline calls a plain function",
                    main_cpu_us_per_message=statistics.median(cpu["offload"]),
                    baseline_main_cpu_us_per_message=statistics.median(cpu["baseline"]),
                )
            )
