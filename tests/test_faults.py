"""Faults: killed workers, stuck tasks, exceptions that cannot travel, huge results.

* Worker processes (and Dask workers) killed at random during a run: the
  tasks they were running FAIL with the cause, every other task completes.
* A task that never returns and ignores cancellation: ``shutdown(timeout)``
  returns or raises on time, and an application that exits with such a task
  running exits promptly, leaving no process behind (run as a subprocess).
* An exception whose pickling fails, one whose unpickling fails: the future
  FAILS with the exception's type name and message, never hangs.
* A 100 MB result arrives intact.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import psutil
import pytest

from conftest import CONTEXTS, load
from offload.api import (
    CANCELLED,
    COMPLETED,
    FAILED,
    STOPPED,
    STOPPING,
    AsyncioEventLoop,
    TraitsExecutor,
    submit_call,
    submit_progress,
)
from offload.testing.pytest_plugin import OffloadAssistant
from reliability_tasks import (
    big_result,
    block_ignoring_cancel,
    raise_unpicklable,
    raise_ununpicklable,
    report_pid_and_work,
)

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

ALL_CONTEXTS = [
    pytest.param("thread", id="thread"),
    pytest.param("process", id="process", marks=pytest.mark.process),
    pytest.param("dask", id="dask", marks=pytest.mark.dask),
]
WORKER_PROCESS_CONTEXTS = ALL_CONTEXTS[1:]


class Harness:
    """A context, an asyncio loop and an executor; released by ``close``."""

    def __init__(self, context_kind: str, **executor_kwargs: Any) -> None:
        self.event_loop = AsyncioEventLoop()
        self.assistant = OffloadAssistant(self.event_loop)
        cls = load(CONTEXTS, context_kind)
        self.context = cls(n_workers=2) if context_kind == "dask" else cls()
        self.executor = TraitsExecutor(
            context=self.context, event_loop=self.event_loop, **executor_kwargs
        )

    def wait_all(self, futures: list[Any], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(f.done for f in futures):
            if time.monotonic() > deadline:
                left = [f.state for f in futures if not f.done]
                raise AssertionError(f"{len(left)} futures never ended: {left[:10]}")
            self.assistant.exercise_event_loop()

    def close(self, timeout: float = 30) -> None:
        # Each step even if an earlier one fails, so that one failure does
        # not leave an event loop or a cluster for later tests to trip on.
        try:
            self.executor.shutdown(timeout=timeout)
        finally:
            try:
                self.context.close()
            finally:
                self.assistant.dispose()
                self.event_loop.close()


def wait_for_file(harness: Harness, path: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        harness.assistant.exercise_event_loop()


# Killed workers --------------------------------------------------------------


#: Every this many tasks, one works ``LONG_TASK`` seconds, and only those
#: are killed: the main thread sees a pid a little after a task reports it,
#: and a 1-10 ms task may be over (its worker idle) by the time the kill
#: lands (a loaded CI run once killed five workers and failed no task).
LONG_EVERY = 20
LONG_TASK = 0.25


def kill_workers_during_a_run(context_kind: str, count: int, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    harness = Harness(context_kind)
    pids: dict[int, int] = {}  # future index -> pid it reported
    try:
        futures = []
        for number in range(count):
            seconds = LONG_TASK if number % LONG_EVERY == 0 else rng.uniform(0.001, 0.01)
            future = submit_progress(harness.executor, report_pid_and_work, number, seconds)
            future.observe(lambda event, n=number: pids.__setitem__(n, event.new), "progress")
            futures.append(future)
        killed: dict[int, int] = {}  # pid -> number of the task it was running
        kill_at = sorted(rng.sample(range(count // 10, count * 8 // 10), kills))
        deadline = time.monotonic() + 50
        while not all(f.done for f in futures):
            if time.monotonic() > deadline:
                raise AssertionError("the run never ended")
            finished = sum(1 for f in futures if f.done)
            if kill_at and finished >= kill_at[0]:
                running = [
                    n for n, f in enumerate(futures)
                    if n % LONG_EVERY == 0 and n in pids and not f.done
                    and pids[n] not in killed
                ]
                if running:
                    victim = rng.choice(running)
                    try:
                        os.kill(pids[victim], signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    else:
                        killed[pids[victim]] = victim
                        kill_at.pop(0)
            harness.assistant.exercise_event_loop()
        failed = [n for n, f in enumerate(futures) if f.state == FAILED]
        completed = [n for n, f in enumerate(futures) if f.state == COMPLETED]
        assert len(failed) + len(completed) == count, {f.state for f in futures}
        assert killed, "no worker was killed: the test did not test anything"
        # Each killed worker was running at most one task, which failed.  On
        # Dask a task whose start had not reached the client yet is run again
        # elsewhere by Dask and may complete: no failure is then right too.
        assert len(failed) <= len(killed), (failed, killed)
        if context_kind == "process":
            assert failed, f"{len(killed)} workers killed mid-task, yet no task failed"
        for n in failed:
            name, message, _ = futures[n].exception
            if context_kind == "process":
                assert "died" in message and "SIGKILL" in message, message
            else:
                assert "lost" in message or "died" in message, message
        # The tasks seen running on a killed worker are among the failed ones
        # unless they had finished just before the kill.
        for victim in killed.values():
            if futures[victim].state == COMPLETED:
                continue
            assert victim in failed
        for n in completed:
            assert futures[n].result == n
    finally:
        harness.close()
    print(f"\n{context_kind}: {count} tasks, {len(killed)} workers killed, "
          f"{len(failed)} failed, {len(completed)} completed")


@pytest.mark.process
def test_killed_worker_processes_fail_only_their_tasks() -> None:
    load(CONTEXTS, "process")
    kill_workers_during_a_run("process", 400, kills=5, seed=random.randrange(2**32))


@pytest.mark.dask
@pytest.mark.process
def test_killed_dask_workers_fail_only_their_tasks() -> None:
    load(CONTEXTS, "dask")
    kill_workers_during_a_run("dask", 200, kills=2, seed=random.randrange(2**32))


# A task that never returns ------------------------------------------------------


@pytest.mark.parametrize("context_kind", ALL_CONTEXTS)
def test_shutdown_with_a_task_ignoring_cancel_returns_or_raises_on_time(
    context_kind: str, tmp_path: Any
) -> None:
    started = str(tmp_path / "started")
    release = str(tmp_path / "release")
    harness = Harness(context_kind)
    try:
        future = submit_call(harness.executor, block_ignoring_cancel, release, started)
        wait_for_file(harness, started)
        timeout = 1.0
        start = time.monotonic()
        try:
            harness.executor.shutdown(timeout=timeout)
        except RuntimeError as error:
            elapsed = time.monotonic() - start
            assert "1 tasks still running" in str(error), str(error)
        else:
            elapsed = time.monotonic() - start
        # On time: the timeout, plus what it takes to end stuck workers.
        assert timeout <= elapsed < timeout + 8, elapsed
        assert harness.executor.state in (STOPPING, STOPPED)
        if harness.executor.state == STOPPED:
            assert future.state == CANCELLED
    finally:
        with open(release, "w"):
            pass
        harness.close()
    assert future.state == CANCELLED


EXIT_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {tests_dir!r})
    import psutil
    from conftest import CONTEXTS, load
    from reliability_tasks import block_forever
    from offload.api import AsyncioEventLoop, TraitsExecutor, submit_call
    from offload._backends.process import pool as process_pool
    from offload._backends.thread import pool as thread_pool

    # How long exit waits for running work is not what this tests, only
    # that it ends: shorter grace periods keep the test quick.
    thread_pool.EXIT_GRACE_PERIOD = process_pool.EXIT_GRACE_PERIOD = 0.3

    def main():
        kind, started = sys.argv[1], sys.argv[2]
        cls = load(CONTEXTS, kind)
        context = cls(n_workers=1) if kind == "dask" else cls()
        loop = AsyncioEventLoop()
        executor = TraitsExecutor(context=context, event_loop=loop)
        submit_call(executor, block_forever, started)
        deadline = time.monotonic() + 30
        while not os.path.exists(started) and time.monotonic() < deadline:
            time.sleep(0.01)
        descendants = [p.pid for p in psutil.Process().children(recursive=True)]
        print("descendants", *descendants, flush=True)
        if sys.argv[3] == "shutdown":
            try:
                executor.shutdown(timeout=0.5)
            except RuntimeError as error:
                print("shutdown raised:", error, flush=True)
        # Exit with the task still running (or its worker killed), without
        # closing anything, as a careless or crashing application would.
        print("exiting", time.monotonic(), flush=True)

    if __name__ == "__main__":
        main()
    """
)


@pytest.mark.parametrize("how", ["shutdown", "plain-exit"])
@pytest.mark.parametrize("context_kind", ALL_CONTEXTS)
def test_a_stuck_task_does_not_hang_interpreter_exit(
    context_kind: str, how: str, tmp_path: Any
) -> None:
    load(CONTEXTS, context_kind)
    script = tmp_path / "app.py"
    script.write_text(EXIT_SCRIPT.format(tests_dir=TESTS_DIR))
    started = str(tmp_path / "started")
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script), context_kind, started, how],
        capture_output=True, text=True, timeout=45,
    )
    end = time.monotonic()
    assert "exiting" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 0, result.stderr
    assert os.path.exists(started)
    assert end - start < 30, end - start
    # The exit itself takes the grace periods (0.3 s here), not the Dask
    # helper's 10 s wait for a helper that never heard the application go,
    # and it is quiet: no thread's traceback, no semaphores left to
    # multiprocessing's resource tracker (which warns as it unlinks them).
    exiting = next(line for line in result.stdout.splitlines() if line.startswith("exiting"))
    assert end - float(exiting.split()[1]) < 5, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "leaked" not in result.stderr, result.stderr
    descendants = [
        int(pid) for line in result.stdout.splitlines() if line.startswith("descendants")
        for pid in line.split()[1:]
    ]
    if context_kind != "thread":
        assert descendants, "the app started no process: nothing was tested"
    deadline = time.monotonic() + 10
    alive = [pid for pid in descendants if _alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)  # polling other processes' exit
        alive = [pid for pid in descendants if _alive(pid)]
    assert not alive, f"processes left running after the app exited: {alive}"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# Exceptions that cannot travel, huge results ------------------------------------


@pytest.mark.parametrize("context_kind", ALL_CONTEXTS)
def test_exception_whose_pickling_fails_fails_the_future(context_kind: str) -> None:
    harness = Harness(context_kind)
    try:
        future = submit_call(harness.executor, raise_unpicklable, "no pickling")
        harness.wait_all([future], timeout=30)
        assert future.state == FAILED
        name, message, formatted = future.exception
        assert name == "reliability_tasks.UnpicklableError"
        assert message == "no pickling"
        assert "raise_unpicklable" in formatted
        if context_kind == "thread":
            assert type(future.exception_object).__name__ == "UnpicklableError"
    finally:
        harness.close()


@pytest.mark.parametrize("context_kind", ALL_CONTEXTS)
def test_exception_whose_unpickling_fails_fails_the_future(context_kind: str) -> None:
    harness = Harness(context_kind)
    try:
        future = submit_call(harness.executor, raise_ununpicklable, "no unpickling")
        after = submit_call(harness.executor, pow, 2, 10)
        harness.wait_all([future, after], timeout=30)
        assert future.state == FAILED
        name, message, _ = future.exception
        assert name == "reliability_tasks.UnunpicklableError"
        assert message == "no unpickling"
        # The channel carries on.
        assert after.state == COMPLETED and after.result == 1024
    finally:
        harness.close()


@pytest.mark.parametrize("context_kind", ALL_CONTEXTS)
def test_a_100_mb_result_arrives_intact(context_kind: str) -> None:
    harness = Harness(context_kind)
    try:
        future = submit_call(harness.executor, big_result, 100)
        harness.wait_all([future], timeout=50)
        assert future.state == COMPLETED, future.exception if future.state == FAILED else ""
        result = future.result
        assert len(result) == 100 * 2**20
        assert result == big_result(100)
    finally:
        harness.close()
