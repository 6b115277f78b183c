"""What a ``FutureGroup`` costs: tasks/s with every future in a group.

Submits N tasks, then runs the asyncio loop until the main thread has seen
every future done (the ``poll`` way of ``calls.py``), in two ways in turn:

``group``
    each future is added to one ``FutureGroup`` as it is submitted, and an
    observer follows the group's ``fraction`` (what a progress bar does);
``baseline``
    the same run without a group.

Two figures per run: ``tasks/s`` from the first submission to the last
future seen done (``"measure": "end to end"``, the group's ``add`` of each
future included), and from the end of the submissions (the tasks, trivial,
have mostly run and queued their messages) to the last future seen done
(``"measure": "delivery"``: the main thread's delivery of the tasks'
messages, which the group slows by following each future's end and each
report).

A third figure, ``"measure": "main-thread CPU"``: tasks per second of
the main thread's own CPU time (``time.thread_time``) over the same span
as end to end: what the group adds to the main thread's work, which a
loaded host (other processes taking the cores) distorts far less than
wall-clock time.

Task kinds: trivial calls; progress tasks reporting ``(i, 4)`` four times;
steps tasks of four steps (at most 25 updates a second, the default: the
worker coalesces them, with a flusher thread); the same with every update
delivered (``steps-every``: no coalescing, so four updates a task reach
the group, and no flusher thread, whose wake-ups make the ``steps`` runs
bimodal: the workers either finish during the submissions or lag far
behind them, whether or not there is a group).  N = 10,000 (``--quick``: 200).  The issue's
target: the group slows delivery by at most 10% (ratio >= 0.9).  Each
record also gives how many notifications of ``fraction`` the group made
(once per delivered batch, not once per future or message), and how many
collections of the garbage collector each way saw, per generation.

Each kind is measured twice: as is (``"gc": "on"``), and with the
garbage collector paused while timing (``"gc": "off"``), which isolates the
group's own work.  The group holds two small objects per pending future;
in this script's small heap (~56,000 objects) those push a burst of 10,000
futures over the threshold of one more full collection, which then walks
every future, a cost an application's far larger heap rarely pays.

Usage: ``python benchmarks/group.py [--context thread|process|dask]
[--repeat R] [--quick] [--kind call|progress|steps ...]``.  Prints one
JSON line per task kind, gc setting and measure.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import _tasks
from _baselines import bench_session
from _harness import DoneScanner, emit, interleave, poll_until, result_record, run_main

SIZES = {"thread": 10_000, "process": 10_000, "dask": 2_000}
QUICK_SIZE = 200
KINDS = ("call", "progress", "steps", "steps-every")

#: Target: tasks/s with a group over tasks/s without.
TARGET_RATIO = 0.9


def submitter(executor: Any, kind: str) -> Any:
    from offload.api import submit_call, submit_progress, submit_steps

    if kind == "call":
        return lambda: submit_call(executor, _tasks.noop)
    if kind == "progress":
        return lambda: submit_progress(executor, _tasks.report_pairs, 4)
    if kind == "steps-every":
        # Every update delivered: no coalescing, so no flusher thread.
        every = executor.options(max_progress_rate=1e9)
        return lambda: submit_steps(every, 4, "start", _tasks.steps, 4)
    return lambda: submit_steps(executor, 4, "start", _tasks.steps, 4)


class Collections:
    """Counts the garbage collector's collections, per generation."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "stop":
            self.counts[info["generation"]] += 1


def run(
    executor: Any, loop: Any, kind: str, n: int, grouped: bool, notes: list[int],
    gc_on: bool = True, collections: list[list[int]] | None = None,
    delivery: list[float] | None = None, cpu: list[float] | None = None,
) -> float:
    """tasks/s for ``n`` tasks of ``kind``, in a group or not, end to end;
    appends the delivery's tasks/s to ``delivery``."""

    submit = submitter(executor, kind)
    gc.collect()
    counter = Collections()
    gc.callbacks.append(counter)
    if not gc_on:
        gc.disable()
    try:
        end_to_end, delivered, main_cpu = _timed(executor, loop, submit, n, grouped, notes)
        if delivery is not None:
            delivery.append(delivered)
        if cpu is not None:
            cpu.append(main_cpu)
        return end_to_end
    finally:
        gc.enable()
        gc.callbacks.remove(counter)
        if collections is not None:
            collections.append(counter.counts)


def _timed(executor: Any, loop: Any, submit: Any, n: int, grouped: bool,
           notes: list[int]) -> tuple[float, float, float]:
    from offload.api import FutureGroup

    notifications = [0]

    def on_fraction(event: Any) -> None:
        notifications[0] += 1

    start = time.perf_counter()
    start_cpu = time.thread_time()
    futures = []
    if grouped:
        group = FutureGroup()
        group.observe(on_fraction, "fraction")
        add = group.add
        for _ in range(n):
            future = submit()
            futures.append(future)
            add(future)
    else:
        for _ in range(n):
            futures.append(submit())
    submitted = time.perf_counter()
    poll_until(loop, DoneScanner(futures))
    end = time.perf_counter()
    end_cpu = time.thread_time()
    if grouped:
        if not group.done or group.done_count != n:
            raise AssertionError(f"group: {group.done_count} of {n} done")
        notes.append(notifications[0])
    return n / (end - start), n / (end - submitted), n / (end_cpu - start_cpu)


def main(args: Any) -> None:
    n = QUICK_SIZE if args.quick else SIZES[args.context]
    with bench_session(args) as (executor, _baseline, loop):
        for kind in args.kind or KINDS:
            for gc_on in (True, False):
                notes: list[int] = []
                grouped_gc: list[list[int]] = []
                plain_gc: list[list[int]] = []
                grouped_delivery: list[float] = []
                plain_delivery: list[float] = []
                grouped_cpu: list[float] = []
                plain_cpu: list[float] = []
                runs, base_runs = interleave(
                    args.repeat,
                    lambda kind=kind, notes=notes, gc_on=gc_on, seen=grouped_gc,
                    deliveries=grouped_delivery, cpu=grouped_cpu: run(
                        executor, loop, kind, n, True, notes, gc_on, seen, deliveries, cpu),
                    lambda kind=kind, gc_on=gc_on, seen=plain_gc,
                    deliveries=plain_delivery, cpu=plain_cpu: run(
                        executor, loop, kind, n, False, [], gc_on, seen, deliveries, cpu),
                )
                for measure, group_runs, plain_runs in (
                    ("end to end", runs, base_runs),
                    ("delivery", grouped_delivery, plain_delivery),
                    ("main-thread CPU", grouped_cpu, plain_cpu),
                ):
                    emit(
                        result_record(
                            "group", args,
                            {"tasks": n, "kind": kind, "gc": "on" if gc_on else "off",
                             "measure": measure},
                            "tasks/s", group_runs, plain_runs,
                            "the same run without a group", None,
                            target_ratio=TARGET_RATIO, fraction_notifications=notes,
                            collections_group=grouped_gc, collections_baseline=plain_gc,
                        )
                    )


def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--kind", action="append", choices=KINDS,
        help="task kind to measure (repeatable; default: all)",
    )


if __name__ == "__main__":
    run_main("group", __doc__.splitlines()[0], main, add_arguments)
