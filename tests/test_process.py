"""MultiprocessingContext: what only worker processes can do wrong.

The shared behaviour suites (test_call, test_iteration, test_progress,
test_custom_task) run on processes through conftest's matrix; this module
covers dead workers, pickling failures, cancellation across processes,
context reuse and close, and shutdown with a stuck worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

import process_tasks as pt
import task_functions as tf
from conftest import wait_done, wait_file
from offload.api import (
    CANCELLED,
    COMPLETED,
    FAILED,
    STOPPED,
    MultiprocessingContext,
    TraitsExecutor,
    submit_call,
    submit_iteration,
    submit_progress,
)

pytestmark = pytest.mark.process


@pytest.fixture
def context():
    context = MultiprocessingContext()
    yield context
    context.close()


@pytest.fixture
def executor(context, offload_assistant):
    executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
    yield executor
    executor.shutdown(timeout=20)


@pytest.fixture
def assistant(offload_assistant):
    return offload_assistant


@pytest.fixture
def one_worker(context, offload_assistant):
    """An executor with a single worker process, so that tasks queue."""
    executor = TraitsExecutor(
        context=context, event_loop=offload_assistant.event_loop, max_workers=1
    )
    yield executor
    executor.shutdown(timeout=20)


def children() -> list[psutil.Process]:
    """Worker processes of this process (not multiprocessing's helpers)."""
    return [
        child for child in psutil.Process().children(recursive=True)
        if "forkserver" not in " ".join(child.cmdline())
        and "resource_tracker" not in " ".join(child.cmdline())
    ]


# Dead workers ----------------------------------------------------------------


@pytest.mark.parametrize(
    "function, args, expected",
    [
        (pt.die, (3,), "exited with code 3"),
        (pt.kill_myself, (signal.SIGKILL,), "killed by SIGKILL"),
        (pt.kill_myself, (signal.SIGTERM,), "killed by SIGTERM"),
        (pt.segfault, (), "killed by SIGSEGV"),
    ],
    ids=["exit", "sigkill", "sigterm", "segfault"],
)
def test_a_dead_worker_fails_its_future_and_says_how(executor, assistant, function, args, expected):
    future = submit_call(executor, function, *args)
    wait_done(assistant, future)
    assert future.state == FAILED
    type_name, message, _ = future.exception
    assert type_name == "concurrent.futures.process.BrokenProcessPool"
    assert "worker process" in message and "died" in message
    assert expected in message
    # The executor carries on with a new worker.
    after = submit_call(executor, tf.square, 4)
    wait_done(assistant, after)
    assert after.result == 16


def test_waiting_futures_still_run_when_a_worker_dies(one_worker, assistant):
    executor = one_worker
    doomed = submit_call(executor, pt.die, 9)
    waiting = [submit_call(executor, tf.square, n) for n in range(5)]
    for future in [doomed, *waiting]:
        wait_done(assistant, future)
    assert doomed.state == FAILED
    assert [f.result for f in waiting] == [n * n for n in range(5)]


def test_a_worker_killed_from_outside_mid_task(executor, assistant, tmp_path):
    path = str(tmp_path / "pid")
    future = submit_call(executor, pt.write_pid_and_wait, path)
    wait_file(assistant, path)
    with open(path) as file:
        os.kill(int(file.read()), signal.SIGKILL)
    wait_done(assistant, future, timeout=10)  # how fast: benchmarks/startup.py
    assert future.state == FAILED
    assert "killed by SIGKILL" in future.exception[1]


def test_a_worker_dying_while_cancelling_ends_cancelled(executor, assistant, tmp_path):
    path = str(tmp_path / "pid")
    future = submit_call(executor, pt.write_pid_and_wait, path)
    wait_file(assistant, path)
    assert future.cancel()
    with open(path) as file:
        os.kill(int(file.read()), signal.SIGKILL)
    wait_done(assistant, future)
    assert future.state == CANCELLED


# Pickling --------------------------------------------------------------------


def test_lambdas_closures_and_local_functions_run(executor, assistant):
    offset = 10

    def local(x):
        return x + offset

    futures = [
        submit_call(executor, lambda x: x * 3, 5),
        submit_call(executor, local, 1),
        submit_iteration(executor, lambda: (n * offset for n in range(3))),
    ]
    results = []
    futures[2].observe(lambda event: results.append(event.new), "result_event")
    for future in futures:
        wait_done(assistant, future)
    assert [f.state for f in futures] == [COMPLETED] * 3
    assert futures[0].result == 15
    assert futures[1].result == 11
    assert results == [0, 10, 20]


def test_an_unpicklable_argument_fails_that_future_and_names_it(executor, assistant):
    import threading

    bad = submit_call(executor, tf.add, 1, threading.Lock())
    good = submit_call(executor, tf.add, 1, 2)
    wait_done(assistant, bad)
    wait_done(assistant, good)
    assert bad.state == FAILED
    type_name, message, _ = bad.exception
    assert type_name == "TypeError"
    assert "positional argument 1" in message and "lock" in message
    assert good.result == 3


def test_an_unpicklable_keyword_argument_is_named(executor, assistant):
    import threading

    bad = submit_call(executor, tf.add, 1, z=threading.Lock())
    wait_done(assistant, bad)
    assert "keyword argument 'z'" in bad.exception[1]


def test_an_unpicklable_result_fails_the_future(executor, assistant):
    future = submit_call(executor, pt.return_lock)
    wait_done(assistant, future)
    assert future.state == FAILED
    assert "could not pickle the result" in future.exception[1]
    assert "lock" in future.exception[1]


def test_an_unpicklable_progress_message_fails_the_future(executor, assistant):
    future = submit_progress(executor, pt.progress_lock)
    wait_done(assistant, future)
    assert future.state == FAILED
    assert "could not pickle a 'progress' message" in future.exception[1]


def test_an_exception_that_does_not_pickle_is_described(executor, assistant):
    future = submit_call(executor, pt.raise_locked)
    wait_done(assistant, future)
    assert future.state == FAILED
    assert future.exception[0] == "process_tasks.LockedError"
    assert future.exception[1] == "locked"
    assert "raise_locked" in future.exception[2]  # the worker's traceback
    assert future.exception_object is None


def test_an_exception_that_does_not_unpickle_is_described(executor, assistant):
    future = submit_call(executor, pt.raise_needs_two)
    wait_done(assistant, future)
    assert future.state == FAILED
    assert future.exception[:2] == ("process_tasks.NeedsTwoArguments", "7: seven")
    assert future.exception_object is None
    after = submit_call(executor, tf.square, 3)
    wait_done(assistant, after)
    assert after.result == 9


def test_an_exception_object_comes_back_when_it_can(executor, assistant):
    future = submit_call(executor, tf.fail, "bad")
    wait_done(assistant, future)
    assert isinstance(future.exception_object, ValueError)
    assert future.exception[:2] == ("ValueError", "bad")


# Cancellation ----------------------------------------------------------------


def test_cancelled_while_waiting_never_runs(one_worker, assistant, tmp_path):
    executor = one_worker
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    marker = str(tmp_path / "ran")
    blocker = submit_call(executor, tf.mark_and_return, started, None)
    wait_done(assistant, blocker)
    busy = submit_call(executor, tf.wait_for_file, release)
    waiting = submit_call(executor, tf.touch, marker)
    assert waiting.cancel()
    tf.touch(release)
    wait_done(assistant, busy)
    wait_done(assistant, waiting)
    assert waiting.state == CANCELLED
    assert busy.state == COMPLETED
    assert not os.path.exists(marker)


def test_cancel_reaches_a_running_progress_task(executor, assistant, tmp_path):
    started = str(tmp_path / "started")
    future = submit_progress(executor, tf.report_until_cancelled, started)
    wait_file(assistant, started)
    assert future.cancel()
    wait_done(assistant, future)
    assert future.state == CANCELLED


def test_cancel_stops_a_running_iteration_between_items(executor, assistant, tmp_path):
    started, release, closed = (str(tmp_path / name) for name in ("s", "r", "c"))
    future = submit_iteration(executor, tf.iterate_until_released, started, release, closed)
    wait_file(assistant, started)
    assert future.cancel()
    tf.touch(release)
    wait_done(assistant, future)
    assert future.state == CANCELLED
    wait_file(assistant, closed)  # the generator was closed in the worker


# Messages --------------------------------------------------------------------


def test_every_message_arrives_in_order_before_the_end(executor, assistant):
    seen = []
    future = submit_progress(executor, tf.report, 20_000)
    future.observe(lambda event: seen.append(event.new), "progress")
    wait_done(assistant, future)
    assert future.result == 20_000
    assert seen == list(range(20_000))


def test_the_context_queue_carries_items_from_workers(context, executor, assistant):
    queue = context.queue()
    future = submit_call(executor, pt.put_to, queue, ["a", {"b": 2}, 3])
    wait_done(assistant, future)
    assert future.result == 3
    assert [queue.get(timeout=10) for _ in range(3)] == ["a", {"b": 2}, 3]


# Contexts, pools, shutdown -----------------------------------------------------


def test_two_executors_share_a_context(context, assistant):
    first = TraitsExecutor(context=context, event_loop=assistant.event_loop)
    second = TraitsExecutor(context=context, event_loop=assistant.event_loop)
    try:
        futures = [submit_call(executor, tf.square, n)
                   for n in range(10) for executor in (first, second)]
        for future in futures:
            wait_done(assistant, future)
        assert sorted(f.result for f in futures) == sorted(2 * [n * n for n in range(10)])
    finally:
        first.shutdown(timeout=20)
        second.shutdown(timeout=20)


@pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
def test_each_start_method_runs_tasks(method, assistant):
    with MultiprocessingContext(start_method=method) as context:
        assert context.start_method == method
        executor = TraitsExecutor(context=context, event_loop=assistant.event_loop)
        future = submit_call(executor, pt.pid)
        wait_done(assistant, future)
        assert future.result != os.getpid()
        executor.shutdown(timeout=20)


def test_a_bad_start_method_is_a_clear_error():
    with pytest.raises(ValueError, match="start_method must be one of"):
        MultiprocessingContext(start_method="teleport")


def test_close_releases_every_process_and_then_refuses_use(assistant):
    context = MultiprocessingContext()
    executor = TraitsExecutor(context=context, event_loop=assistant.event_loop)
    future = submit_call(executor, pt.pid)
    wait_done(assistant, future)
    worker = psutil.Process(future.result)
    executor.shutdown(timeout=20)
    context.close()
    worker.wait(timeout=10)
    assert not worker.is_running()
    assert context.closed
    for make in (context.event, context.queue, context.worker_pool):
        with pytest.raises(RuntimeError, match="closed"):
            make()
    with pytest.raises(RuntimeError, match="closed"):
        TraitsExecutor(context=context, event_loop=assistant.event_loop)
    context.close()  # idempotent


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs /dev/shm to see segments")
def test_a_context_dropped_without_close_frees_its_shared_memory_quietly(assistant):
    import gc

    context = MultiprocessingContext()
    executor = TraitsExecutor(context=context, event_loop=assistant.event_loop)
    future = submit_call(executor, pt.pid)
    wait_done(assistant, future)
    executor.shutdown(timeout=20)
    names = [shm.name for shm in context._flags._segments]
    assert names and all(os.path.exists(f"/dev/shm/{name}") for name in names)
    # The cancel flags' segment went with the context, its views released
    # first: its own __del__ would raise BufferError (an unraisable
    # exception, an error here) and leave the name to the resource tracker.
    del context, executor, future
    gc.collect()
    assert not any(os.path.exists(f"/dev/shm/{name}") for name in names)


def test_close_kills_workers_still_busy(assistant, tmp_path):
    context = MultiprocessingContext()
    pool = context.worker_pool(max_workers=1)
    path = str(tmp_path / "pid")
    pool_future = pool.submit(pt.write_pid_and_wait, path)
    deadline = time.monotonic() + 20
    while not os.path.exists(path):
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.01)
    started = time.monotonic()
    context.close()
    assert time.monotonic() - started < 10
    assert isinstance(pool_future.exception(timeout=10), Exception)


def test_shutdown_with_a_stuck_worker_kills_it_and_says_so(context, assistant, tmp_path):
    executor = TraitsExecutor(context=context, event_loop=assistant.event_loop)
    started = str(tmp_path / "started")
    stuck = submit_progress(executor, pt.ignore_cancellation, started)
    wait_file(assistant, started)
    began = time.monotonic()
    with pytest.raises(RuntimeError, match="killed its worker processes"):
        executor.shutdown(timeout=1.0)
    assert time.monotonic() - began < 15
    assert executor.state == STOPPED
    assert stuck.state == CANCELLED


def test_a_foreign_process_pool_fails_tasks_clearly(assistant):
    import concurrent.futures

    with MultiprocessingContext() as context, \
            concurrent.futures.ProcessPoolExecutor(1) as pool:
        executor = TraitsExecutor(
            context=context, event_loop=assistant.event_loop, worker_pool=pool
        )
        future = submit_call(executor, tf.square, 2)
        wait_done(assistant, future)
        assert future.state == FAILED
        assert "context.worker_pool()" in future.exception[1]
        executor.shutdown(timeout=20)


def test_workers_that_cannot_start_fail_the_queued_tasks(tmp_path):
    # The main module exits when a spawned worker imports it.
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent("""
        import sys
        if __name__ != "__main__":
            sys.exit(7)

        import asyncio
        from offload.api import (
            AsyncioEventLoop, MultiprocessingContext, TraitsExecutor, submit_call,
        )

        loop = AsyncioEventLoop(event_loop=asyncio.new_event_loop())
        context = MultiprocessingContext(start_method="spawn")
        executor = TraitsExecutor(context=context, event_loop=loop)
        future = submit_call(executor, abs, -1)
        future.observe(lambda event: loop.event_loop.stop(), "done")
        loop.event_loop.run_forever()
        print(future.state, future.exception[1])
        executor.shutdown(timeout=10)
        context.close()
        loop.close()
    """))
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("failed")
    assert "fail to start" in out.stdout and "exited with code 7" in out.stdout


def test_without_cloudpickle_main_functions_go_by_reference_and_lambdas_say_what_to_install(
    tmp_path,
):
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent("""
        import sys
        sys.modules["cloudpickle"] = None  # as if not installed

        def double(x):
            return 2 * x

        if __name__ == "__main__":
            import asyncio
            from offload.api import (
                AsyncioEventLoop, MultiprocessingContext, TraitsExecutor, submit_call,
            )

            loop = AsyncioEventLoop(event_loop=asyncio.new_event_loop())
            context = MultiprocessingContext()
            executor = TraitsExecutor(context=context, event_loop=loop)
            by_reference = submit_call(executor, double, 21)
            by_value = submit_call(executor, lambda: 1)

            async def main():
                print("result", await by_reference)
                try:
                    await by_value
                except Exception:
                    print("lambda", by_value.exception[1])

            loop.event_loop.run_until_complete(main())
            executor.shutdown(timeout=10)
            context.close()
            loop.close()
    """))
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "result 42" in out.stdout
    assert "offload[process]" in out.stdout


def test_thousands_of_withdrawn_tasks_behind_a_busy_worker(one_worker, assistant, tmp_path):
    # Caught the pool recursing once per withdrawn item when a worker freed
    # up (RecursionError in its reader thread past ~1,000 of them).
    executor = one_worker
    release = str(tmp_path / "release")
    blocker = submit_call(executor, tf.wait_for_file, release)
    waiting = [submit_call(executor, tf.square, n) for n in range(3000)]
    assert all(future.cancel() for future in waiting)
    tf.touch(release)
    after = submit_call(executor, tf.square, 7)
    for future in [blocker, *waiting, after]:
        wait_done(assistant, future)
    assert blocker.state == COMPLETED and after.result == 49
    assert {future.state for future in waiting} == {CANCELLED}
