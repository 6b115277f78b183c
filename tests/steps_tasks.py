"""Steps tasks the behaviour suites run, and group helpers.

An importable module (not the test files) so that worker processes and Dask
workers can unpickle these functions by reference.
"""

from __future__ import annotations

import os
import time
from typing import Any

from task_functions import wait_for_file


def steps(n: int, reporter: Any) -> int:
    """``n`` steps named "step 0".., then stop; return ``n``."""
    for i in range(n):
        reporter.step(f"step {i}")
    reporter.stop("all done")
    return n


def sized_steps(sizes: list[int], reporter: Any) -> str:
    """One step per size, then stop."""
    for i, size in enumerate(sizes):
        reporter.step(f"part {i}", size=size)
    reporter.stop("finished")
    return "ok"


def steps_no_stop(n: int, reporter: Any) -> None:
    """``n`` steps and no ``stop``: the last one stays pending."""
    for i in range(n):
        reporter.step(f"step {i}")


def steps_kwargs(reporter: Any, **kwargs: Any) -> dict:
    reporter.step("one")
    return kwargs


def steps_then_fail(n: int, reporter: Any) -> None:
    for i in range(n):
        reporter.step(f"step {i}")
    raise ValueError("after steps")


def steps_until_cancelled(started: str, reporter: Any) -> str:
    """Step until a step raises TaskCancelled (the test cancels)."""
    with open(started, "w"):
        pass
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        reporter.step("working")
        time.sleep(0.001)  # a task's work, not synchronisation
    return "never cancelled"


def stop_after_cancel(started: str, release: str, reporter: Any) -> str:
    """One step, then ``stop`` once the test has cancelled (it must raise)."""
    reporter.step("first")
    with open(started, "w"):
        pass
    wait_for_file(release)
    reporter.stop("unreachable")
    return "stop did not raise"


def flood(n: int, reporter: Any) -> float:
    """``n`` steps as fast as possible; return the seconds they took."""
    start = time.monotonic()
    for i in range(n):
        reporter.step(f"item {i}")
    reporter.stop(f"{n} items")
    return time.monotonic() - start


def fast_then_slow(release: str, reporter: Any) -> str:
    """A quick step, at once a second one that lasts until ``release``."""
    reporter.step("quick")
    reporter.step("slow")
    wait_for_file(release)
    reporter.stop("over")
    return "ok"


def timed_steps(total: int, pause: float, release: str, reporter: Any) -> str:
    """``total`` steps of ``pause`` seconds of work each; waits for
    ``release`` before the last one, so the test can read an estimate."""
    for i in range(total):
        reporter.step(f"step {i}")
        if i == total - 1:
            wait_for_file(release)
        else:
            time.sleep(pause)  # simulated work of a step
    reporter.stop("done")
    return "ok"


def bad_step(kind: str, reporter: Any) -> None:
    if kind == "size":
        reporter.step("negative", size=-1)
    elif kind == "message":
        reporter.step(42)
    else:
        reporter.stop(None)


def wait_then_return(path: str, value: Any) -> Any:
    wait_for_file(path)
    return value


def wait_for_file_in_a_step(path: str, reporter: Any) -> str:
    wait_for_file(path)
    reporter.stop("released")
    return path


def exists(path: str) -> bool:
    return os.path.exists(path)
