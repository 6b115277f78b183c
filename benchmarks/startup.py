"""Process context start-up, per start method, and how fast a killed worker
fails its future.

For each start method (spawn, forkserver, fork), each repeat runs in a fresh
Python process (so the forkserver, Python's imports and the OS caches of one
run do not help the next), alternately for offload and for a raw
``ProcessPoolExecutor`` with the same start method:

``cold``
    seconds from ``MultiprocessingContext(start_method=m)`` (raw:
    ``ProcessPoolExecutor(mp_context=...)``) to the first trivial result
    seen on the main thread: what a user waits for the first time.  Imports
    are done before the clock starts.
``warm``
    the same again in that process with a new context and executor (the
    forkserver, if any, is already running).
``kill``
    a task reports its worker's pid and blocks; the main thread kills that
    worker (SIGKILL) and times until the future is FAILED (raw: until the
    pool future raises ``BrokenProcessPool``).  Target (issue 4): <= 2 s.

Usage: ``python benchmarks/startup.py [--methods spawn,forkserver,fork]
[--repeat R] [--quick]``.  One JSON line per (start method, measure).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _tasks  # noqa: E402
from _harness import (  # noqa: E402
    WAIT_TIMEOUT,
    DoneScanner,
    Skip,
    close_loop,
    context_class,
    emit,
    interleave,
    make_executor,
    new_loop,
    parse_args,
    poll_until,
    register_tasks_by_value,
    result_record,
    shutdown_executor,
)

#: Kill-to-FAILED target (s), issue 4.
KILL_TARGET = 2.0

METHODS = [m for m in ("spawn", "forkserver", "fork") if m in multiprocessing.get_all_start_methods()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated start methods")
    parser.add_argument("--child", choices=["offload", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)


# In the child process ------------------------------------------------------


def offload_first_result(cls: Any, method: str, loop: Any) -> tuple[float, Any, Any]:
    """Seconds from the context's creation to its first result; returns the
    context and executor too, still open."""
    from offload.api import submit_call

    start = time.perf_counter()
    context = cls(start_method=method)
    executor = make_executor(context, loop)
    future = submit_call(executor, _tasks.noop)
    poll_until(loop, DoneScanner([future]))
    elapsed = time.perf_counter() - start
    if future.state != "completed":
        raise AssertionError(f"first task ended {future.state!r}")
    return elapsed, context, executor


def offload_kill(executor: Any, loop: Any) -> tuple[float, str]:
    """Seconds from SIGKILL of a busy worker to its future FAILED."""
    from offload.api import submit_progress

    pids: list[int] = []
    future = submit_progress(executor, _tasks.worker_pid)
    future.observe(lambda event: pids.append(event.new), "progress")
    poll_until(loop, lambda: bool(pids))
    start = time.perf_counter()
    os.kill(pids[0], signal.SIGKILL)
    poll_until(loop, DoneScanner([future]), interval=0.001)
    elapsed = time.perf_counter() - start
    if future.state != "failed":
        raise AssertionError(f"killed worker's future ended {future.state!r}, not failed")
    return elapsed, f"{future.exception[0]}: {future.exception[1]}"


def child_offload(method: str) -> dict[str, Any]:
    import offload.api  # noqa: F401 - imports before the clock starts

    cls = context_class("process")
    register_tasks_by_value()
    loop = new_loop()
    result: dict[str, Any] = {}
    try:
        for name in ("cold", "warm"):
            elapsed, context, executor = offload_first_result(cls, method, loop)
            result[name] = elapsed
            try:
                if name == "warm":
                    result["kill"], result["kill_error"] = offload_kill(executor, loop)
            finally:
                shutdown_executor(executor)
                context.close()
    finally:
        close_loop(loop)
    return result


def child_baseline(method: str) -> dict[str, Any]:
    import concurrent.futures
    from concurrent.futures.process import BrokenProcessPool

    mp = multiprocessing.get_context(method)
    queue = mp.Queue()
    result: dict[str, Any] = {}
    for name in ("cold", "warm"):
        start = time.perf_counter()
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=os.cpu_count(), mp_context=mp,
            initializer=_tasks.init_queue, initargs=(queue,),
        )
        pool.submit(_tasks.noop).result(timeout=WAIT_TIMEOUT)
        result[name] = time.perf_counter() - start
        if name == "warm":
            future = pool.submit(_tasks.put_pid_and_block)
            pid = queue.get(timeout=WAIT_TIMEOUT)
            start = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            try:
                future.result(timeout=WAIT_TIMEOUT)
            except BrokenProcessPool as exc:
                result["kill"] = time.perf_counter() - start
                result["kill_error"] = f"BrokenProcessPool: {exc}"
            else:
                raise AssertionError("the killed worker's task returned")
        pool.shutdown(wait=True, cancel_futures=True)
    queue.close()
    queue.join_thread()
    return result


# In the parent -------------------------------------------------------------


def run_child(which: str, method: str) -> dict[str, Any]:
    command = [sys.executable, os.path.abspath(__file__), "--child", which, "--method", method]
    done = subprocess.run(command, capture_output=True, text=True, timeout=WAIT_TIMEOUT)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"startup child {which} {method} failed:\n{done.stdout}\n{done.stderr}")
    record = json.loads(lines[-1])
    if "skipped" in record:
        raise Skip(record["skipped"])
    return record  # type: ignore[no-any-return]


def main(args: argparse.Namespace) -> None:
    if args.child:
        body = child_offload if args.child == "offload" else child_baseline
        try:
            print(json.dumps(body(args.method)), flush=True)
        except Skip as skip:
            print(json.dumps({"skipped": str(skip)}), flush=True)
        return
    args.context = "process"
    for method in args.methods.split(","):
        results: dict[str, list[dict[str, Any]]] = {"offload": [], "baseline": []}

        def job(which: str, method: str = method, store: dict = results) -> Any:
            def run() -> float:
                store[which].append(run_child(which, method))
                return 0.0

            return run

        try:
            interleave(args.repeat, job("offload"), job("baseline"))
        except Skip as skip:
            emit({"benchmark": "startup", "start_method": method, "skipped": str(skip)})
            return
        raw = f"ProcessPoolExecutor({os.cpu_count()} workers, {method}), same run"
        for measure, what in (
            ("cold", "context created to first result, fresh process"),
            ("warm", "second context in the same process to first result"),
            ("kill", "SIGKILL of a busy worker to its future FAILED"),
        ):
            emit(result_record(
                "startup", args, {"start_method": method, "measure": measure, "what": what},
                "s", [r[measure] for r in results["offload"]],
                [r[measure] for r in results["baseline"]], raw,
                KILL_TARGET if measure == "kill" else None, higher_is_better=False,
                **({"error": results["offload"][-1]["kill_error"],
                    "baseline_error": results["baseline"][-1]["kill_error"][:200]}
                   if measure == "kill" else {}),
            ))


if __name__ == "__main__":
    main(parse_args(__doc__.splitlines()[0], add_arguments=add_arguments))
