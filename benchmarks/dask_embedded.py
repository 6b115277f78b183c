"""The embedded Dask cluster: in a helper process (the default) or in ours.

Each sample runs in a fresh Python process, alternately for
``DaskContext()`` (scheduler and client in a helper process),
``DaskContext(in_process=True)`` (both in the application's process) and
the raw baseline, ``client.submit`` on a ``LocalCluster`` made in the
process, as Dask users do (same settings: 2 worker processes of one
thread, worker-saturation inf).  A sample starts its cluster, warms up
with 200 calls, then submits N trivial calls at once and waits for all:

- tasks/s, from the first submit until all are done;
- the application process's RSS before the batch, with the N done futures
  held, and after dropping them and waiting until the scheduler has
  released every task: how much of the batch's memory stays resident.

One JSON line per mode with medians over the samples.  Usage:
``python benchmarks/dask_embedded.py [--repeat R] [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import subprocess
import sys
import time
from typing import Any

from _harness import Skip, emit, environment, rss_bytes

MODES = ["helper", "in_process", "raw"]
SIZE, QUICK_SIZE = 20_000, 50
WORKERS = 2


def _wait(predicate: Any, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the batch did not finish in time")
        time.sleep(0.01)  # polling the scheduler from outside its loop


def _measure(batch: Any, scheduler_tasks: Any, n: int) -> dict[str, float]:
    """Warm up, then time a batch of ``n`` and take RSS around it.

    The warm-up is 200 calls, or ``n`` if fewer (``--quick``).

    ``batch(count)`` runs ``count`` calls and returns ``(seconds, futures)``;
    ``scheduler_tasks()`` is how many tasks the scheduler still holds.
    """
    batch(min(200, n))
    _wait(lambda: not scheduler_tasks())
    gc.collect()
    before = rss_bytes()
    took, futures = batch(n)
    gc.collect()
    held = rss_bytes()
    del futures
    _wait(lambda: not scheduler_tasks())
    gc.collect()
    after = rss_bytes()
    return {"rate": n / took, "held": held - before, "kept": after - before}


def _offload_sample(mode: str, n: int) -> dict[str, float]:
    import _tasks

    from offload.api import AsyncioEventLoop, DaskContext, TraitsExecutor, submit_call
    from offload.testing.pytest_plugin import OffloadAssistant

    context = DaskContext(n_workers=WORKERS, in_process=(mode == "in_process"))
    assistant = OffloadAssistant(AsyncioEventLoop())
    executor = TraitsExecutor(context=context, event_loop=assistant.event_loop)

    def batch(count: int) -> tuple[float, list[Any]]:
        start = time.perf_counter()
        futures = [submit_call(executor, _tasks.noop) for _ in range(count)]
        for future in futures:
            while not future.done:
                assistant.exercise_event_loop()
        assert all(future.state == "completed" for future in futures)
        return time.perf_counter() - start, futures

    def scheduler_tasks() -> int:
        if context._helper is not None:
            return context._helper.call(_scheduler_tasks)
        return len(context._cluster.scheduler.tasks)

    try:
        return _measure(batch, scheduler_tasks, n)
    finally:
        executor.shutdown(timeout=60)
        context.close()
        assistant.dispose()


def _scheduler_tasks(client: Any, cluster: Any) -> int:
    return len(cluster.scheduler.tasks)


def _raw_sample(n: int) -> dict[str, float]:
    import _tasks
    import dask
    import distributed

    with dask.config.set({"distributed.scheduler.worker-saturation": math.inf,
                          "distributed.admin.low-level-log-length": 10}):
        cluster = distributed.LocalCluster(n_workers=WORKERS, threads_per_worker=1,
                                           processes=True, dashboard_address=":0")
        client = distributed.Client(cluster, set_as_default=False)
    try:
        def batch(count: int) -> tuple[float, list[Any]]:
            start = time.perf_counter()
            futures = [client.submit(_tasks.noop, pure=False) for _ in range(count)]
            client.gather(futures)
            return time.perf_counter() - start, futures

        return _measure(batch, lambda: len(cluster.scheduler.tasks), n)
    finally:
        client.close()
        cluster.close()


def child(mode: str, n: int) -> None:
    sample = _raw_sample(n) if mode == "raw" else _offload_sample(mode, n)
    print(json.dumps(sample), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        print(json.dumps({"benchmark": "dask_embedded", "skipped": str(exc)}))
        return
    n = QUICK_SIZE if args.quick else SIZE
    samples: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for _ in range(args.repeat):
        for mode in MODES:
            done = subprocess.run(
                [sys.executable, __file__, "--child", mode, str(n)],
                capture_output=True, text=True, timeout=1800, check=False,
            )
            if done.returncode:
                raise Skip(f"{mode} sample failed: {done.stderr[-2000:]}")
            samples[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
    raw_rate = statistics.median(s["rate"] for s in samples["raw"])
    for mode in MODES:
        runs = samples[mode]
        rate = statistics.median(s["rate"] for s in runs)
        held = statistics.median(s["held"] for s in runs) / 2**20
        kept = statistics.median(s["kept"] for s in runs) / 2**20
        emit({
            "benchmark": "dask_embedded",
            "mode": mode,
            "tasks": n,
            "rate_median": rate,
            "rate_ratio_to_raw": rate / raw_rate,
            "rss_held_mb": held,
            "rss_kept_mb": kept,
            "kept_fraction": kept / held if held > 0 else None,
            "runs": runs,
            "repeat": args.repeat,
            "quick": args.quick,
            **environment(),
        })


if __name__ == "__main__":
    main()
