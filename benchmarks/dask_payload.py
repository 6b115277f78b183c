"""Dask: one large array given to many tasks.

N tasks (``--tasks``, default 20) each get the same float64 array of
``--mb`` MB (default: 100, then 10) and return ``len`` of it, so that the
figure is the cost of getting the array to the workers.  All N are
submitted at once; two times are taken on the main thread (an asyncio
loop): until the N submits have returned (``submit``), and until every
result is in hand (``total``); medians over ``--repeat`` samples, the modes
interleaved.  ``sent_mb``: how much crossed to the cluster per batch (the
array once per scatter, or once per task).

Modes, all on one ``LocalCluster`` made here (2 worker processes of one
thread, worker-saturation inf), except the ``helper_*`` ones:

- ``offload``: ``DaskContext(client=...)``, large arguments scattered
  (the default);
- ``offload_unscattered``: the same with ``scatter_threshold=None``: each
  task carries the array, as before issue 32;
- ``raw_submit``: ``client.submit(len, array, pure=False)`` per task (the
  raw baseline: what the tasks cost in Dask without sharing);
- ``raw_scatter``: ``client.scatter(array)`` once, then ``client.submit(len,
  future, pure=False)`` per task (what a Dask user would write by hand);
- ``helper`` and ``helper_unscattered``: ``DaskContext()`` (its own
  cluster, scheduler and client in a helper process), with and without
  scattering.  Skipped with ``--no-helper``.

Usage: ``python benchmarks/dask_payload.py [--mb 100 10] [--tasks 20]
[--repeat R] [--no-helper] [--quick]``.  One JSON line per size and mode.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

from _harness import (
    DoneScanner,
    Skip,
    close_loop,
    emit,
    environment,
    make_executor,
    new_loop,
    poll_until,
    run_main,
    shutdown_executor,
)

WORKERS = 2


def _offload_batch(context: Any, executor: Any, loop: Any, array: Any, n: int
                   ) -> dict[str, float]:
    from offload.api import submit_call

    scattered = context._scatterer.scattered
    gc.collect()
    start = time.perf_counter()
    futures = [submit_call(executor, len, array) for _ in range(n)]
    submitted = time.perf_counter() - start
    poll_until(loop, DoneScanner(futures))
    total = time.perf_counter() - start
    assert all(future.result == len(array) for future in futures)
    sends = context._scatterer.scattered - scattered
    threshold = context._scatterer._threshold
    if threshold is None or array.nbytes < threshold:
        sends = n  # with each task
    return {"submit": submitted, "total": total, "sends": sends}


def _raw_batch(client: Any, array: Any, n: int, scatter: bool) -> dict[str, float]:
    gc.collect()
    start = time.perf_counter()
    with warnings.catch_warnings():
        # Dask warns of each large task graph: the point of this baseline.
        warnings.simplefilter("ignore", UserWarning)
        if scatter:
            shared = client.scatter(array)
            futures = [client.submit(len, shared, pure=False) for _ in range(n)]
        else:
            futures = [client.submit(len, array, pure=False) for _ in range(n)]
    submitted = time.perf_counter() - start
    results = client.gather(futures)
    total = time.perf_counter() - start
    assert all(result == len(array) for result in results)
    return {"submit": submitted, "total": total, "sends": 1 if scatter else n}


def _record(mode: str, mb: float, n: int, samples: list[dict[str, float]],
            baseline: list[dict[str, float]]) -> dict[str, Any]:
    def median(runs: list[dict[str, float]], name: str) -> float:
        return statistics.median(run[name] for run in runs)

    total = median(samples, "total")
    return {
        "benchmark": "dask_payload",
        "mode": mode,
        "array_mb": mb,
        "tasks": n,
        "samples": len(samples),
        "submit_s": round(median(samples, "submit"), 4),
        "total_s": round(total, 4),
        "sent_mb": round(median(samples, "sends") * mb, 1),
        "raw_submit_total_s": round(median(baseline, "total"), 4),
        "total_vs_raw_submit": round(total / median(baseline, "total"), 3),
        "environment": environment(),
    }


def _measure(args: argparse.Namespace, mb: float, n: int, numpy: Any, client: Any,
             contexts: dict[str, Any], executors: dict[str, Any], loop: Any) -> None:
    """Every mode, ``args.repeat`` times, interleaved, on an array of ``mb`` MB."""
    array = numpy.random.default_rng(0).random(int(mb * 1e6) // 8)
    jobs: dict[str, Callable[[], dict[str, float]]] = {
        mode: (lambda mode=mode: _offload_batch(
            contexts[mode], executors[mode], loop, array, n))
        for mode in contexts
    }
    jobs["raw_submit"] = lambda: _raw_batch(client, array, n, scatter=False)
    jobs["raw_scatter"] = lambda: _raw_batch(client, array, n, scatter=True)
    names = list(jobs)
    for name in names:
        jobs[name]()  # a warm-up of each (imports, connections), not counted
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for repeat in range(args.repeat):
        # The order rotates, so that no mode always runs first.
        for k in range(len(names)):
            name = names[(repeat + k) % len(names)]
            runs[name].append(jobs[name]())
    for name in names:
        emit(_record(name, mb, n, runs[name], runs["raw_submit"]))


def _body(args: argparse.Namespace) -> None:
    try:
        import distributed
        import numpy
    except ImportError as exc:
        raise Skip(f"needs dask.distributed and numpy: {exc}") from None
    import dask

    from offload.api import DaskContext

    sizes = [2.0] if args.quick else args.mb
    n = 3 if args.quick else args.tasks
    loop = new_loop()
    with dask.config.set({"distributed.scheduler.worker-saturation": math.inf}):
        cluster = distributed.LocalCluster(
            n_workers=WORKERS, threads_per_worker=1, processes=True,
            dashboard_address=None,
        )
    client = distributed.Client(cluster, set_as_default=False)
    contexts = {
        "offload": DaskContext(client=client),
        "offload_unscattered": DaskContext(client=client, scatter_threshold=None),
    }
    if args.helper:
        contexts["helper"] = DaskContext(n_workers=WORKERS)
        contexts["helper_unscattered"] = DaskContext(
            n_workers=WORKERS, scatter_threshold=None
        )
    executors = {mode: make_executor(context, loop) for mode, context in contexts.items()}
    try:
        for mb in sizes:
            _measure(args, mb, n, numpy, client, contexts, executors, loop)
    finally:
        for executor in executors.values():
            shutdown_executor(executor)
        for context in contexts.values():
            context.close()
        client.close()
        cluster.close()
        close_loop(loop)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mb", type=float, nargs="+", default=[100.0, 10.0],
                        help="array sizes in MB")
    parser.add_argument("--tasks", type=int, default=20, help="tasks per batch")
    parser.add_argument("--no-helper", dest="helper", action="store_false",
                        help="skip the DaskContext() modes (their own cluster)")


if __name__ == "__main__":
    run_main("dask_payload", __doc__.splitlines()[0], _body, _add_arguments)
