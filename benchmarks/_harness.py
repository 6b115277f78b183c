"""Shared parts of the benchmark scripts: options, contexts, timing, output.

Every script measures offload and a raw baseline in the same run,
interleaving their repeats so that both see the same background noise (these
machines are shared), and prints one JSON line per measured configuration
with medians, never a single run.

Contexts load lazily and by name, so a context that does not exist yet (or
whose extra is not installed) gives a ``{"skipped": ...}`` line instead of a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: Context names accepted by ``--context``.
CONTEXTS = ("thread", "process", "dask")

#: Where each context class may be found, tried in order.
_CONTEXT_SOURCES = {
    "thread": [("offload.api", "MultithreadingContext")],
    "process": [
        ("offload.api", "MultiprocessingContext"),
        ("offload._backends.process.context", "MultiprocessingContext"),
    ],
    "dask": [
        ("offload._backends.dask.context", "DaskContext"),
        ("offload.api", "DaskContext"),
    ],
}

#: Worker processes of the benchmarks' Dask cluster (the machine has 2 cores).
DASK_WORKERS = 2

#: Longest any single wait in a benchmark may take (s): a hang becomes an error.
WAIT_TIMEOUT = 300.0


class Skip(Exception):
    """A configuration cannot be measured here; the message says why."""


# Options -------------------------------------------------------------------


def parse_args(
    description: str,
    argv: list[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """Parse the options every script shares.

    ``--repeat`` defaults to 5 (1 with ``--quick``).  ``--quick`` makes every
    size tiny: it checks that a script runs, not how fast.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--context", choices=CONTEXTS, default="thread")
    parser.add_argument("--repeat", type=int, default=None, help="repeats per configuration")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 5
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


# Environment ---------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict[str, Any]:
    """What a figure depends on: versions, machine, date."""
    import traits

    import offload

    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "offload": offload.__version__,
        "traits": traits.__version__,
        "machine": f"{platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {_cpu_model()}",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        # Other jobs on the machine: 1-minute load average, as the run ended.
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def emit(record: dict[str, Any]) -> None:
    """Print one JSON line and flush, so a caller reading a pipe sees it now."""
    print(json.dumps(record, sort_keys=False), flush=True)


def result_record(
    benchmark: str,
    args: argparse.Namespace,
    config: dict[str, Any],
    unit: str,
    offload_runs: list[float],
    baseline_runs: list[float] | None,
    baseline_name: str | None,
    target: float | None,
    higher_is_better: bool = True,
    target_ratio: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build the JSON record of one configuration: medians, ratio, target.

    ``target`` is an absolute figure in ``unit``; ``target_ratio`` one
    relative to the baseline (Dask: half of raw ``client.submit``).
    """
    median = statistics.median(offload_runs)
    baseline_median = statistics.median(baseline_runs) if baseline_runs else None
    ratio = median / baseline_median if baseline_median else None
    if target is not None:
        met = median >= target if higher_is_better else median <= target
    elif target_ratio is not None and ratio is not None:
        met = ratio >= target_ratio if higher_is_better else ratio <= target_ratio
    else:
        met = None
    return {
        "benchmark": benchmark,
        "context": args.context,
        "event_loop": "asyncio",
        "config": config,
        "unit": unit,
        "median": median,
        "baseline": baseline_name,
        "baseline_median": baseline_median,
        "ratio": ratio,
        "target": target,
        "target_ratio": target_ratio,
        "met": met,
        "runs": offload_runs,
        "baseline_runs": baseline_runs,
        "repeat": args.repeat,
        "quick": args.quick,
        **extra,
        **environment(),
    }


def skipped_record(benchmark: str, args: argparse.Namespace, reason: str) -> dict[str, Any]:
    return {"benchmark": benchmark, "context": args.context, "skipped": reason, **environment()}


# Contexts ------------------------------------------------------------------


def context_class(name: str) -> Any:
    """The context class called ``name``, or :class:`Skip` saying why not."""
    errors = []
    for module_name, attribute in _CONTEXT_SOURCES[name]:
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            errors.append(f"{module_name}.{attribute}: {exc}")
    raise Skip(f"{name} context not importable here ({'; '.join(errors)})")


@contextmanager
def open_context(name: str) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Yield ``(context, parts)``, closing everything on exit.

    ``parts`` holds what the baselines share with offload: for Dask, the
    ``client`` of the cluster that the context runs on, so that raw
    ``client.submit`` is measured on the same workers.
    """
    cls = context_class(name)
    parts: dict[str, Any] = {}
    if name == "dask":
        try:
            import distributed
        except ImportError as exc:
            raise Skip(f"dask.distributed not installed: {exc}") from None
        import dask

        # The cluster DaskContext() would start here (2 worker processes of
        # one thread, worker-saturation inf), made by us so that the raw
        # client.submit baseline runs on the very same one.
        with dask.config.set({"distributed.scheduler.worker-saturation": math.inf}):
            cluster = distributed.LocalCluster(
                n_workers=DASK_WORKERS, threads_per_worker=1, processes=True,
                dashboard_address=None,
            )
        client = distributed.Client(cluster, set_as_default=False)
        parts["client"] = client
        parts["cluster"] = (
            f"LocalCluster({DASK_WORKERS} worker processes x 1 thread, "
            "worker-saturation inf)"
        )
        try:
            try:
                context = cls(client=client)
            except TypeError as exc:
                raise Skip(f"DaskContext(client=...) not supported yet: {exc}") from None
            try:
                yield context, parts
            finally:
                context.close()
        finally:
            client.close()
            cluster.close()
        return
    context = cls()
    if name == "process":
        parts["start_method"] = context.start_method
    try:
        yield context, parts
    finally:
        context.close()


def register_tasks_by_value() -> None:
    """Let cloudpickle carry ``_tasks`` by value, whatever a worker's sys.path."""
    try:
        import cloudpickle
    except ImportError:
        return
    import _tasks

    try:
        cloudpickle.register_pickle_by_value(_tasks)
    except ValueError:
        pass  # already registered


# Event loop and executor ---------------------------------------------------


def new_loop() -> asyncio.AbstractEventLoop:
    """A fresh asyncio loop, current in this thread."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    loop.close()
    asyncio.set_event_loop(None)


def make_executor(context: Any, loop: asyncio.AbstractEventLoop) -> Any:
    from offload.api import AsyncioEventLoop, TraitsExecutor

    return TraitsExecutor(context=context, event_loop=AsyncioEventLoop(event_loop=loop))


def shutdown_executor(executor: Any) -> None:
    executor.shutdown(timeout=60.0)


def run_until(
    loop: asyncio.AbstractEventLoop,
    waiter: asyncio.Future,
    timeout: float = WAIT_TIMEOUT,
) -> Any:
    """Run ``loop`` until ``waiter`` is done; a hang raises TimeoutError."""
    return loop.run_until_complete(asyncio.wait_for(waiter, timeout))


def poll_until(
    loop: asyncio.AbstractEventLoop,
    condition: Callable[[], bool],
    interval: float = 0.0005,
    timeout: float = WAIT_TIMEOUT,
) -> None:
    """Run ``loop`` until ``condition()`` holds, checking every ``interval`` s.

    For waiting on many futures without an observer on each: the condition
    should be amortised O(1) (see :class:`DoneScanner`).
    """
    waiter = loop.create_future()

    def check() -> None:
        if condition():
            waiter.set_result(None)
        else:
            loop.call_later(interval, check)

    loop.call_soon(check)
    run_until(loop, waiter, timeout)


class DoneScanner:
    """True once every future of a list is done; O(1) amortised per call.

    Uses only the public ``done`` trait: it walks forward over futures that
    are done and stops at the first that is not.
    """

    def __init__(self, futures: list[Any]) -> None:
        self._futures = futures
        self._index = 0

    def __call__(self) -> bool:
        futures = self._futures
        index = self._index
        end = len(futures)
        while index < end and futures[index].done:
            index += 1
        self._index = index
        return index == end


# Measuring -----------------------------------------------------------------


def interleave(
    repeat: int,
    offload: Callable[[], float],
    baseline: Callable[[], float] | None,
) -> tuple[list[float], list[float] | None]:
    """Run offload and baseline ``repeat`` times each, alternating, and
    return their figures."""
    if baseline is None:
        return interleave_all(repeat, [offload])[0], None
    offload_runs, baseline_runs = interleave_all(repeat, [offload, baseline])
    return offload_runs, baseline_runs


def interleave_all(repeat: int, jobs: list[Callable[[], float]]) -> list[list[float]]:
    """Run each job ``repeat`` times, in turn, and return their figures.

    The order rotates from one repeat to the next, so that no job always
    runs first, on the warmest caches, or always last.
    """
    runs: list[list[float]] = [[] for _ in jobs]
    for i in range(repeat):
        for k in range(len(jobs)):
            index = (i + k) % len(jobs)
            runs[index].append(jobs[index]())
    return runs


def rss_bytes() -> int:
    """Resident set size of this process now."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return int(psutil.Process().memory_info().rss)


def run_main(
    benchmark: str,
    description: str,
    body: Callable[[argparse.Namespace], None],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """Parse options and run ``body(args)``; a :class:`Skip` prints a skip line."""
    args = parse_args(description, add_arguments=add_arguments)
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        body(args)
    except Skip as skip:
        emit(skipped_record(benchmark, args, str(skip)))


def perf() -> float:
    return time.perf_counter()
