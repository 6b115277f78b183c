"""The job ``progress.py`` and ``iteration.py`` share: stream messages from
tasks to observers on the main thread, check that none is lost or reordered,
and time it.
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

import _tasks
from _baselines import OrderChecker, bench_session
from _harness import DoneScanner, emit, interleave, poll_until, result_record, run_until

#: Targets in messages/s delivered on the main thread (issues 3, 4 and 6).
TARGETS = {"thread": 227_000, "process": 100_000, "dask": 100_000}

#: Messages per configuration: (tasks in parallel, messages per task).
CONFIGS = [(1, 200_000), (4, 50_000)]
QUICK_CONFIGS = [(1, 2_000), (2, 1_000)]

#: kind -> (submit function name, worker function, trait fired per message).
KINDS = {
    "progress": ("submit_progress", _tasks.report_progress, "progress"),
    "iteration": ("submit_iteration", _tasks.generate, "result_event"),
}


def offload_messages(executor: Any, loop: Any, kind: str, tasks: int, count: int) -> float:
    """Seconds from the first submit until every message of ``tasks``
    parallel tasks of ``count`` messages each was delivered, in order."""
    import offload.api

    submit_name, function, trait = KINDS[kind]
    submit = getattr(offload.api, submit_name)
    checkers = [OrderChecker(count, loop.create_future()) for _ in range(tasks)]
    gc.collect()
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
    elapsed = max(c.finished_at for c in checkers) - start  # type: ignore[type-var]
    poll_until(loop, DoneScanner(futures))
    for checker, future in zip(checkers, futures):
        checker.verify()
        if future.state != "completed":
            raise AssertionError(f"a message task ended {future.state!r}, not completed")
    return elapsed


def main(kind: str, args: argparse.Namespace) -> None:
    configs = QUICK_CONFIGS if args.quick else CONFIGS
    with bench_session(args) as (executor, baseline, loop):
        for tasks, count in configs:
            total = tasks * count
            # The baselines stream from one task; compare like with like.
            with_baseline = tasks == 1 and baseline.has_messages
            runs, base_runs = interleave(
                args.repeat,
                lambda: total / offload_messages(executor, loop, kind, tasks, count),
                (lambda: total / baseline.messages(count)) if with_baseline else None,
            )
            emit(
                result_record(
                    kind,
                    args,
                    {"tasks": tasks, "messages_per_task": count},
                    "messages/s",
                    runs,
                    base_runs,
                    baseline.name if with_baseline else None,
                    TARGETS.get(args.context),
                    verified="all messages delivered, in order, per task",
                )
            )
