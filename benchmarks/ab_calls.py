"""Bursts of trivial calls on this tree against another revision, in one process.

``calls.py`` compares offload with a raw pool; between two runs of it this
machine's speed moves by more than the few percent a change of the
per-task path is worth.  So, as ``ab_latency.py`` does for the round trip,
this script loads the revision to compare with beside the installed
``offload``, makes one thread executor of each on one asyncio loop, and
alternates blocks between them: a block submits N trivial ``submit_call``
tasks, then runs the loop until all are done.  It times the main thread's
CPU (``time.thread_time``, which the other threads' work and the host's
other load hardly touch) for the submissions and for the delivery, and the
block's wall time; the JSON line gives each tree's medians per task and the
median of the per-block ratios of this tree to the revision (below 1 is
faster).

Usage: ``python benchmarks/ab_calls.py [--against REV] [--tasks N]
[--observe] [--repeat R] [--quick]`` from a git checkout (default: ``HEAD``, which
measures the working tree's uncommitted change); ``R`` × 4 blocks of each
tree (default 5: 20).  ``--observe`` attaches a ``done`` observer to every
future as it is submitted (its cost is then in the submit's figure).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from typing import Any

from _harness import Skip, close_loop, emit, environment, new_loop, run_main, run_until
from ab_latency import load_revision

TASKS, QUICK_TASKS = 5_000, 50
#: Blocks of each tree per ``--repeat`` (default 5: 20 blocks).
BLOCKS_PER_REPEAT = 4


def noop() -> None:
    """The task: nothing, so that only offload's own work is timed."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--against", default="HEAD", help="git revision to compare with")
    parser.add_argument("--tasks", type=int, default=TASKS, help="tasks per block")
    parser.add_argument(
        "--observe", action="store_true",
        help="attach a `done` observer to each future as it is submitted",
    )


def _on_done(event: Any) -> None:
    """The ``--observe`` observer: nothing, so that only its cost counts."""


async def _burst(
    api: Any, executor: Any, tasks: int, observe: bool
) -> tuple[float, float, float]:
    """One block: (submit CPU, delivery CPU, wall), in µs per task."""
    submit_call = api.submit_call
    wall = time.perf_counter()
    cpu = time.thread_time()
    if observe:
        futures = []
        for _ in range(tasks):
            future = submit_call(executor, noop)
            future.observe(_on_done, "done")
            futures.append(future)
    else:
        futures = [submit_call(executor, noop) for _ in range(tasks)]
    submitted = time.thread_time()
    waited = 0.0
    index = 0
    while index < tasks:
        # Not timed as delivery: the loop's own turn and this check.
        before = time.thread_time()
        while index < tasks and futures[index].done:
            index += 1
        waited += time.thread_time() - before
        if index < tasks:
            await asyncio.sleep(0)
    delivered = time.thread_time() - submitted - waited
    wall = time.perf_counter() - wall
    scale = 1e6 / tasks
    return (submitted - cpu) * scale, delivered * scale, wall * scale


async def _interleave(
    trees: dict[str, tuple[Any, Any]], blocks: int, tasks: int, observe: bool
) -> dict[str, list[tuple[float, float, float]]]:
    names = list(trees)
    for api, executor in trees.values():  # warm up: threads started, caches primed
        await _burst(api, executor, tasks, observe)
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
    for index in range(blocks):
        for name in names if index % 2 else names[::-1]:
            gc.collect()
            samples[name].append(await _burst(*trees[name], tasks, observe))
    return samples


def main(args: argparse.Namespace) -> None:
    import offload.api

    if args.context != "thread":
        raise Skip("ab_calls measures the thread context only (the per-task path)")
    tasks = QUICK_TASKS if args.quick else args.tasks
    blocks = 2 if args.quick else BLOCKS_PER_REPEAT * args.repeat
    with tempfile.TemporaryDirectory() as scratch:
        other = load_revision(args.against, scratch)
        loop = new_loop()
        try:
            trees = {
                name: (api, api.TraitsExecutor(
                    event_loop=api.AsyncioEventLoop(event_loop=loop), max_workers=2
                ))
                for name, api in (("this", offload.api), ("that", other))
            }
            samples = run_until(loop, asyncio.ensure_future(
                _interleave(trees, blocks, tasks, args.observe), loop=loop))
            for _, executor in trees.values():
                executor.shutdown(timeout=60)
        finally:
            close_loop(loop)
            sys.path.remove(scratch)
    record: dict[str, Any] = {
        "benchmark": "ab_calls",
        "against": args.against,
        "context": "thread",
        "unit": "µs per task (main-thread CPU: submit, deliver; wall: the block)",
        "blocks": blocks,
        "tasks_per_block": tasks,
        "wait": "observe" if args.observe else "poll",
        "quick": args.quick,
    }
    for position, part in enumerate(("submit", "deliver", "wall")):
        this = [sample[position] for sample in samples["this"]]
        that = [sample[position] for sample in samples["that"]]
        record[f"this_{part}"] = statistics.median(this)
        record[f"against_{part}"] = statistics.median(that)
        record[f"ratio_{part}"] = statistics.median(
            a / b for a, b in zip(this, that, strict=True)
        )
    emit({**record, **environment()})


if __name__ == "__main__":
    run_main("ab_calls", __doc__.splitlines()[0], main, add_arguments)
