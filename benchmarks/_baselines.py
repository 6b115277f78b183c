"""The raw floors offload is compared with, one class per context.

Each baseline does the same job as offload by the most direct means its
context offers, and delivers on the same asyncio loop's thread:

thread
    ``concurrent.futures.ThreadPoolExecutor`` (default size, as offload's
    thread context) and one ``loop.call_soon_threadsafe`` per task end or
    message.
process
    ``concurrent.futures.ProcessPoolExecutor`` (spawn, ``os.cpu_count()``
    workers); a task's end comes back through the pool future's done
    callback and one ``call_soon_threadsafe``; messages go through a plain
    ``multiprocessing`` queue that a thread drains, one
    ``call_soon_threadsafe`` per message.
dask
    raw ``client.submit(pure=False)`` on the same cluster as offload, waited
    with ``distributed.wait`` (calls) or a done callback (round trip).  No
    message baseline: raw Dask has no message channel to compare with.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import _tasks
from _harness import (
    WAIT_TIMEOUT,
    DoneScanner,
    close_loop,
    make_executor,
    new_loop,
    open_context,
    poll_until,
    register_tasks_by_value,
    run_until,
    shutdown_executor,
)


class OrderChecker:
    """Main-thread receiver of ``0 .. count-1``: counts, checks order, resolves
    ``waiter`` once the last one arrived."""

    def __init__(self, count: int, waiter: asyncio.Future) -> None:
        self.count = count
        self.expected = 0
        self.out_of_order = 0
        self.waiter = waiter
        self.finished_at: float | None = None

    def __call__(self, value: Any) -> None:
        if value == self.expected:
            self.expected += 1
        else:
            self.out_of_order += 1
            self.expected = value + 1
        if self.expected == self.count:
            self.finished_at = time.perf_counter()
            if not self.waiter.done():
                self.waiter.set_result(None)

    def verify(self) -> None:
        """Raise unless every message arrived, in order."""
        if self.out_of_order or self.expected != self.count:
            raise AssertionError(
                f"messages lost or reordered: {self.out_of_order} out of order, "
                f"last was {self.expected - 1} of {self.count}"
            )


class Baseline:
    """Interface: each method returns elapsed seconds, measured end to end."""

    name: str = ""
    has_messages = True

    def calls(self, n: int) -> float:
        gc.collect()
        start = time.perf_counter()
        handles = self.submit_calls(n)
        self.wait_calls(handles)
        return time.perf_counter() - start

    def submit_calls(self, n: int, times: Any = None) -> list:
        """Submit ``n`` trivial tasks, return their handles (kept alive).

        With ``times`` (an array of ``n`` floats), time each submit into it.
        """
        raise NotImplementedError

    def wait_calls(self, handles: list) -> None:
        """Wait until the tasks of :meth:`submit_calls` have all ended."""
        raise NotImplementedError

    def messages(self, count: int) -> float:
        raise NotImplementedError

    def round_trip(self) -> float:
        """One sample, run inside the loop (a coroutine's await)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class ThreadBaseline(Baseline):
    name = "ThreadPoolExecutor + loop.call_soon_threadsafe per task/message"

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pool = concurrent.futures.ThreadPoolExecutor()

    def submit_calls(self, n: int, times: Any = None) -> list:
        loop = self.loop
        waiter = self._waiter = loop.create_future()
        remaining = [n]

        def on_done() -> None:
            remaining[0] -= 1
            if not remaining[0]:
                waiter.set_result(None)

        call_soon = loop.call_soon_threadsafe
        noop = _tasks.noop

        def task() -> None:
            noop()
            call_soon(on_done)

        return _submit_many(self.pool.submit, task, n, times)

    def wait_calls(self, handles: list) -> None:
        run_until(self.loop, self._waiter)

    def messages(self, count: int) -> float:
        loop = self.loop
        checker = OrderChecker(count, loop.create_future())
        call_soon = loop.call_soon_threadsafe

        def task() -> None:
            for i in range(count):
                call_soon(checker, i)

        gc.collect()
        start = time.perf_counter()
        self.pool.submit(task)
        run_until(loop, checker.waiter)
        elapsed = time.perf_counter() - start
        checker.verify()
        return elapsed

    async def round_trip(self) -> float:  # type: ignore[override]
        loop = self.loop
        waiter = loop.create_future()

        def on_done() -> None:
            waiter.set_result(time.perf_counter())

        def task() -> None:
            loop.call_soon_threadsafe(on_done)

        start = time.perf_counter()
        self.pool.submit(task)
        return await waiter - start

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class ProcessBaseline(Baseline):
    name = (
        "ProcessPoolExecutor + done callback/call_soon_threadsafe per task; "
        "multiprocessing.Queue drained by a thread for messages"
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        mp = multiprocessing.get_context("spawn")
        self.queue = mp.Queue()
        self.pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=os.cpu_count(),
            mp_context=mp,
            initializer=_tasks.init_queue,
            initargs=(self.queue,),
        )

    def submit_calls(self, n: int, times: Any = None) -> list:
        loop = self.loop
        waiter = self._waiter = loop.create_future()
        remaining = [n]

        def on_done() -> None:
            remaining[0] -= 1
            if not remaining[0]:
                waiter.set_result(None)

        call_soon = loop.call_soon_threadsafe

        def pool_done(_: concurrent.futures.Future) -> None:
            call_soon(on_done)

        submit = self.pool.submit
        noop = _tasks.noop

        def submit_one(_: Any) -> concurrent.futures.Future:
            future = submit(noop)
            future.add_done_callback(pool_done)
            return future

        return _submit_many(submit_one, None, n, times)

    def wait_calls(self, handles: list) -> None:
        run_until(self.loop, self._waiter)

    def messages(self, count: int) -> float:
        loop = self.loop
        checker = OrderChecker(count, loop.create_future())
        call_soon = loop.call_soon_threadsafe
        get = self.queue.get

        def drain() -> None:
            for _ in range(count):
                call_soon(checker, get(timeout=WAIT_TIMEOUT))

        drainer = threading.Thread(target=drain, name="baseline-drain")
        gc.collect()
        start = time.perf_counter()
        drainer.start()
        self.pool.submit(_tasks.queue_messages, count)
        run_until(loop, checker.waiter)
        elapsed = time.perf_counter() - start
        drainer.join(WAIT_TIMEOUT)
        checker.verify()
        return elapsed

    async def round_trip(self) -> float:  # type: ignore[override]
        loop = self.loop
        waiter = loop.create_future()

        def on_done() -> None:
            waiter.set_result(time.perf_counter())

        def pool_done(_: concurrent.futures.Future) -> None:
            loop.call_soon_threadsafe(on_done)

        start = time.perf_counter()
        self.pool.submit(_tasks.noop).add_done_callback(pool_done)
        return await waiter - start

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.queue.close()
        self.queue.join_thread()


class DaskBaseline(Baseline):
    name = "raw client.submit(pure=False) on the same cluster"
    has_messages = False

    def __init__(self, loop: asyncio.AbstractEventLoop, client: Any) -> None:
        self.loop = loop
        self.client = client

    def submit_calls(self, n: int, times: Any = None) -> list:
        submit = self.client.submit

        def submit_one(noop: Any) -> Any:
            return submit(noop, pure=False)

        return _submit_many(submit_one, _tasks.noop, n, times)

    def wait_calls(self, handles: list) -> None:
        import distributed

        distributed.wait(handles, timeout=WAIT_TIMEOUT)

    async def round_trip(self) -> float:  # type: ignore[override]
        loop = self.loop
        waiter = loop.create_future()

        def on_done() -> None:
            waiter.set_result(time.perf_counter())

        def dask_done(_: Any) -> None:
            loop.call_soon_threadsafe(on_done)

        start = time.perf_counter()
        future = self.client.submit(_tasks.noop, pure=False)
        future.add_done_callback(dask_done)
        return await waiter - start


def _submit_many(submit: Any, argument: Any, n: int, times: Any) -> list:
    if times is None:
        return [submit(argument) for _ in range(n)]
    handles = []
    append = handles.append
    clock = time.perf_counter
    for i in range(n):
        start = clock()
        append(submit(argument))
        times[i] = clock() - start
    return handles


def make_baseline(
    context: str, loop: asyncio.AbstractEventLoop, parts: dict[str, Any]
) -> Baseline:
    """The baseline for ``context``, sharing ``parts`` (the Dask client)."""
    if context == "thread":
        return ThreadBaseline(loop)
    if context == "process":
        return ProcessBaseline(loop)
    return DaskBaseline(loop, parts["client"])


@contextlib.contextmanager
def bench_session(
    args: argparse.Namespace,
) -> Iterator[tuple[Any, Baseline, asyncio.AbstractEventLoop]]:
    """Yield ``(executor, baseline, loop)`` for ``args.context``, warmed up.

    The executor runs on a fresh asyncio loop and a context that this
    session opens; everything is shut down and closed on exit.
    """
    from offload.api import submit_call

    register_tasks_by_value()
    loop = new_loop()
    try:
        with open_context(args.context) as (context, parts):
            executor = make_executor(context, loop)
            try:
                baseline = make_baseline(args.context, loop, parts)
                try:
                    # Start every worker before anything is timed.
                    warm = [submit_call(executor, _tasks.noop) for _ in range(50)]
                    poll_until(loop, DoneScanner(warm))
                    baseline.calls(50)
                    yield executor, baseline, loop
                finally:
                    baseline.close()
            finally:
                shutdown_executor(executor)
    finally:
        close_loop(loop)
