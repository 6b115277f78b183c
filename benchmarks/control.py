"""Controlling running work: force-cancel latency, time-limit lateness,
and how soon the next task starts after a kill.

On a ``MultiprocessingContext`` (the default start method, ``kill_grace``
1.0 s) and an asyncio loop; each repeat is one measurement, the JSON line
gives the median over ``--repeat`` repeats (seconds):

``force_cancel``
    a pure-Python task that never looks at its cancel flag: from
    ``future.cancel(force=True)`` to the future CANCELLED on the main
    thread.  Target (issue 31): 0.2 s.  Anchor: pebble's ``cancel()`` kills
    the worker ~0.10 s later.
``force_cancel_sigterm_ignored``
    the same for a task that ignores SIGTERM and sleeps in C, minus
    ``kill_grace`` (SIGKILL comes then).  Target: 0.2 s past the grace.
``next_start``
    with one worker, a second task waits behind the stuck one: from the
    force-cancel to the waiting task's start (its own clock, in the
    replacement worker).  Target: 0.3 s.
``timeout_late``
    a task with ``timeout=0.2`` that never ends: from its start (its own
    clock) plus 0.2 s to its future FAILED with ``TaskTimedOut`` on the
    main thread, which includes killing the worker.  Target: 0.05 s.
    Anchor: pebble's ``schedule(timeout=0.5)`` fails 5-107 ms late.
``timeout_late_thread``
    the same on threads, where the limit is cooperative: the task reports
    progress every millisecond, so notices the cancel at once.

``time.monotonic()`` is one clock for every process of a machine (Linux,
macOS), so a worker's start time compares with the main thread's.

Usage: ``python benchmarks/control.py [--repeat R] [--quick]``.
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from _harness import (  # noqa: E402
    close_loop,
    emit,
    environment,
    make_executor,
    new_loop,
    parse_args,
    poll_until,
)

TARGETS = {
    "force_cancel": 0.2,
    "force_cancel_sigterm_ignored": 0.2,
    "next_start": 0.3,
    "timeout_late": 0.05,
    "timeout_late_thread": 0.05,
}
KILL_GRACE = 1.0
LIMIT = 0.2


# Tasks (top level: worker processes import this script) -------------------


def spin_forever(path: str) -> None:
    with open(path, "w") as file:
        file.write(repr(time.monotonic()))
    while True:
        pass


def deaf_sleep(path: str) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(path, "w") as file:
        file.write(repr(time.monotonic()))
    time.sleep(600)


def started_at(progress: Any = None) -> float:
    return time.monotonic()


def report_forever(path: str, progress: Any = None) -> None:
    with open(path, "w") as file:
        file.write(repr(time.monotonic()))
    while True:
        progress(None)
        time.sleep(0.001)


# Measurements ---------------------------------------------------------------


def _wait_file(loop: Any, path: str) -> float:
    poll_until(loop, lambda: os.path.exists(path) and os.path.getsize(path) > 0)
    with open(path) as file:
        return float(file.read())


def force_cancel(executor: Any, loop: Any, path: str, task: Any) -> float:
    from offload.api import submit_call

    future = submit_call(executor, task, path)
    _wait_file(loop, path)
    poll_until(loop, lambda: future.state == "executing")
    asked = time.monotonic()
    future.cancel(force=True)
    poll_until(loop, lambda: future.done, interval=0.0002)
    assert future.state == "cancelled", future.state
    return time.monotonic() - asked


def next_start(executor: Any, loop: Any, path: str) -> float:
    from offload.api import submit_call

    stuck = submit_call(executor, spin_forever, path)
    waiting = submit_call(executor, started_at)
    _wait_file(loop, path)
    poll_until(loop, lambda: stuck.state == "executing")
    asked = time.monotonic()
    stuck.cancel(force=True)
    poll_until(loop, lambda: waiting.done)
    return waiting.result - asked


def timeout_late(executor: Any, loop: Any, path: str, threads: bool) -> float:
    from offload.api import TaskTimedOut, submit_call, submit_progress

    options = executor.options(timeout=LIMIT)
    if threads:
        future = submit_progress(options, report_forever, path)
    else:
        future = submit_call(options, spin_forever, path)
    begun = _wait_file(loop, path)
    poll_until(loop, lambda: future.done, interval=0.0002)
    ended = time.monotonic()
    assert isinstance(future.exception_object, TaskTimedOut), future.state
    return ended - (begun + LIMIT)


def record(name: str, runs: list[float], args: Any) -> dict[str, Any]:
    median = statistics.median(runs)
    return {
        "benchmark": "control", "context": "thread" if name.endswith("thread") else "process",
        "config": {"measure": name, "kill_grace": KILL_GRACE, "limit": LIMIT},
        "unit": "s", "median": median, "runs": runs, "target": TARGETS[name],
        "met": median <= TARGETS[name], "repeat": args.repeat, "quick": args.quick,
        **environment(),
    }


def main() -> None:
    from offload.api import MultiprocessingContext, MultithreadingContext, TraitsExecutor

    args = parse_args(__doc__.splitlines()[0])
    import tempfile

    runs: dict[str, list[float]] = {name: [] for name in TARGETS}
    loop = new_loop()
    with tempfile.TemporaryDirectory() as directory, \
            MultiprocessingContext(kill_grace=KILL_GRACE) as context:
        from offload.api import AsyncioEventLoop

        executor = make_executor(context, loop)
        single = TraitsExecutor(
            context=context, event_loop=AsyncioEventLoop(event_loop=loop), max_workers=1
        )
        with MultithreadingContext() as threads:
            thread_executor = make_executor(threads, loop)
            # A first task starts the workers: not what is measured.
            from offload.api import submit_call

            warm = submit_call(executor, started_at)
            poll_until(loop, lambda: warm.done)
            for index in range(args.repeat):
                path = os.path.join(directory, f"{index}-")
                runs["force_cancel"].append(force_cancel(executor, loop, path + "a", spin_forever))
                runs["force_cancel_sigterm_ignored"].append(
                    force_cancel(executor, loop, path + "b", deaf_sleep) - KILL_GRACE
                )
                runs["next_start"].append(next_start(single, loop, path + "c"))
                runs["timeout_late"].append(timeout_late(executor, loop, path + "d", False))
                runs["timeout_late_thread"].append(
                    timeout_late(thread_executor, loop, path + "e", True)
                )
            for each in (executor, single, thread_executor):
                each.shutdown(timeout=60)
    close_loop(loop)
    for name, values in runs.items():
        emit(record(name, values, args))


if __name__ == "__main__":
    main()
