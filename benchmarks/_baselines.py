"""The raw floors offload is compared with, one class per context.

Each baseline does the same job as offload by the most direct means its
context offers, and delivers on the same asyncio loop's thread:

thread
    ``concurrent.futures.ThreadPoolExecutor`` (default size, as offload's
    thread context) and one ``loop.call_soon_threadsafe`` per task end or
    message.
process
    ``concurrent.futures.ProcessPoolExecutor`` (``os.cpu_count()`` workers,
    the offload context's start method); a task's end comes back through the pool future's done
    callback and one ``call_soon_threadsafe``; messages go through a plain
    ``multiprocessing`` queue that a thread drains, one
    ``call_soon_threadsafe`` per message.
dask
    raw ``client.submit(pure=False)`` on the same cluster as offload, waited
    with ``distributed.wait`` (calls) or a done callback (round trip);
    messages: one ``Worker.log_event`` per message, a
    ``Client.subscribe_topic`` handler and one ``call_soon_threadsafe`` per
    message (the fastest raw channel, see ``dask_channels.py``).

Thread and process baselines also give a reference for calls observed one
by one (:meth:`Baseline.traits_calls`): the same raw pool, plus one plain
Traits ``HasTraits`` object per task, made and given one ``observe(handler,
"done")`` observer on the loop's thread before the task is submitted, its
``done`` set to True on the loop's thread by the task's
``call_soon_threadsafe``.  That is the floor of "one Traits observer per
task" without offload: what Traits' own ``observe`` costs.
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
import uuid
from collections.abc import Callable, Iterator
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
from traits.api import Bool, HasTraits


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


class ObservedJob(HasTraits):
    """A raw task's stand-in for a future: one ``done`` trait to observe."""

    done = Bool(False)


class Baseline:
    """Interface: each method returns elapsed seconds, measured end to end."""

    name: str = ""
    has_messages = True
    #: What :meth:`traits_calls` measures; None where it is not measured.
    traits_name: str | None = None

    def calls(self, n: int) -> float:
        gc.collect()
        start = time.perf_counter()
        handles = self.submit_calls(n)
        self.wait_calls(handles)
        return time.perf_counter() - start

    def traits_calls(self, n: int) -> float:
        """As :meth:`calls`, each task with an :class:`ObservedJob` that
        has one Traits ``observe`` observer on ``done``."""
        gc.collect()
        start = time.perf_counter()
        handles = self.submit_traits_calls(n)
        self.wait_calls(handles)
        return time.perf_counter() - start

    def submit_calls(self, n: int, times: Any = None) -> list:
        """Submit ``n`` trivial tasks, return their handles (kept alive).

        With ``times`` (an array of ``n`` floats), time each submit into it.
        """
        raise NotImplementedError

    def submit_traits_calls(self, n: int) -> list:
        """Submit ``n`` trivial tasks, each with an :class:`ObservedJob`,
        made and observed on the loop's thread before its task is
        submitted, whose ``done`` the task's end sets on the loop's thread;
        return the tasks' handles (for :meth:`wait_calls`)."""
        raise NotImplementedError

    def wait_calls(self, handles: list) -> None:
        """Wait until the tasks of :meth:`submit_calls` (or
        :meth:`submit_traits_calls`) have all ended."""
        raise NotImplementedError

    def messages(self, tasks: int, count: int) -> tuple[float, float]:
        """Stream ``0 .. count-1`` from each of ``tasks`` parallel tasks to
        the loop's thread; return (messages/s, main-thread CPU µs/message)."""
        raise NotImplementedError

    def round_trip(self) -> float:
        """One sample, run inside the loop (a coroutine's await)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class ThreadBaseline(Baseline):
    name = "ThreadPoolExecutor + loop.call_soon_threadsafe per task/message"
    traits_name = (
        "ThreadPoolExecutor + one Traits-observed HasTraits per task, its done "
        "set by loop.call_soon_threadsafe"
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop, max_workers: int | None = None
    ) -> None:
        self.loop = loop
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers)

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

    def submit_traits_calls(self, n: int) -> list:
        loop = self.loop
        waiter = self._waiter = loop.create_future()
        on_done = _job_counter(n, waiter)
        call_soon = loop.call_soon_threadsafe
        noop = _tasks.noop
        submit = self.pool.submit

        def task(job: ObservedJob) -> None:
            noop()
            call_soon(setattr, job, "done", True)

        def submit_one(_: Any) -> concurrent.futures.Future:
            job = ObservedJob()
            job.observe(on_done, "done")
            return submit(task, job)

        return _submit_many(submit_one, None, n, None)

    def wait_calls(self, handles: list) -> None:
        run_until(self.loop, self._waiter)

    def messages(self, tasks: int, count: int) -> tuple[float, float]:
        loop = self.loop
        checkers = [OrderChecker(count, loop.create_future()) for _ in range(tasks)]
        call_soon = loop.call_soon_threadsafe

        def task(checker: OrderChecker) -> None:
            for i in range(count):
                call_soon(checker, i)

        gc.collect()
        cpu = time.thread_time()
        start = time.perf_counter()
        for checker in checkers:
            self.pool.submit(task, checker)
        for checker in checkers:
            run_until(loop, checker.waiter)
        return finish(checkers, start, cpu)

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
    traits_name = (
        "ProcessPoolExecutor + one Traits-observed HasTraits per task, its done "
        "set by the done callback's loop.call_soon_threadsafe"
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, start_method: str = "spawn") -> None:
        self.loop = loop
        mp = multiprocessing.get_context(start_method)
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

    def submit_traits_calls(self, n: int) -> list:
        loop = self.loop
        waiter = self._waiter = loop.create_future()
        on_done = _job_counter(n, waiter)
        call_soon = loop.call_soon_threadsafe
        submit = self.pool.submit
        noop = _tasks.noop

        def submit_one(_: Any) -> concurrent.futures.Future:
            job = ObservedJob()
            job.observe(on_done, "done")

            def pool_done(_: concurrent.futures.Future) -> None:
                call_soon(setattr, job, "done", True)

            future = submit(noop)
            future.add_done_callback(pool_done)
            return future

        return _submit_many(submit_one, None, n, None)

    def wait_calls(self, handles: list) -> None:
        run_until(self.loop, self._waiter)

    def messages(self, tasks: int, count: int) -> tuple[float, float]:
        loop = self.loop
        checkers = [OrderChecker(count, loop.create_future()) for _ in range(tasks)]
        call_soon = loop.call_soon_threadsafe
        get = self.queue.get

        def drain() -> None:
            for _ in range(tasks * count):
                index, value = get(timeout=WAIT_TIMEOUT)
                call_soon(checkers[index], value)

        drainer = threading.Thread(target=drain, name="baseline-drain")
        gc.collect()
        cpu = time.thread_time()
        start = time.perf_counter()
        drainer.start()
        for index in range(tasks):
            self.pool.submit(_tasks.queue_messages, index, count)
        for checker in checkers:
            run_until(loop, checker.waiter)
        drainer.join(WAIT_TIMEOUT)
        return finish(checkers, start, cpu)

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
    name = (
        "raw client.submit(pure=False) on the same cluster; messages: one "
        "Worker.log_event per message, Client.subscribe_topic handler, one "
        "call_soon_threadsafe per message"
    )

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

        # The benchmarks' client is not the default one (as DaskContext's
        # own is not); distributed.wait looks for the current client.
        with self.client.as_current():
            distributed.wait(handles, timeout=WAIT_TIMEOUT)

    def messages(self, tasks: int, count: int) -> tuple[float, float]:
        loop = self.loop
        client = self.client
        checkers = [OrderChecker(count, loop.create_future()) for _ in range(tasks)]
        call_soon = loop.call_soon_threadsafe
        topics = [f"bench-{uuid.uuid4().hex[:8]}" for _ in range(tasks)]
        for topic, checker in zip(topics, checkers, strict=True):

            def handler(event: tuple, checker: OrderChecker = checker) -> None:
                if event[1] != DASK_READY:
                    call_soon(checker, event[1])

            dask_subscribe(client, topic, handler)
        try:
            gc.collect()
            cpu = time.thread_time()
            start = time.perf_counter()
            futures = [
                client.submit(_tasks.dask_log_events, topic, count, pure=False)
                for topic in topics
            ]
            for checker in checkers:
                run_until(loop, checker.waiter)
            result = finish(checkers, start, cpu)
            for future in futures:
                future.result(timeout=WAIT_TIMEOUT)
        finally:
            for topic in topics:
                client.unsubscribe_topic(topic)
        return result

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


#: What a client logs to learn that its topic subscription is in place.
DASK_READY = "subscribed"


def dask_subscribe(client: Any, topic: str, handler: Any) -> None:
    """``client.subscribe_topic``, returning once the scheduler forwards.

    The subscription travels to the scheduler asynchronously, and events
    logged before it arrives are not forwarded (offload subscribes when it
    makes its router, long before a task runs).  So log a ``DASK_READY``
    event from the client until one comes back; ``Client.log_event`` is a
    direct call that may overtake the subscription, hence the repeats.  The
    handler must ignore ``DASK_READY`` events.
    """
    ready = threading.Event()

    def first(event: tuple) -> None:
        if event[1] == DASK_READY:
            ready.set()
        handler(event)

    client.subscribe_topic(topic, first)
    deadline = time.monotonic() + 30
    while True:
        client.log_event(topic, DASK_READY)
        if ready.wait(0.05):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the subscription to {topic!r} never took effect")


def finish(checkers: list[OrderChecker], start: float, cpu: float) -> tuple[float, float]:
    """(messages/s, main-thread CPU µs per message) of a finished stream.

    The rate counts up to the last message delivered; the CPU time is this
    (the main) thread's, which noise from other processes barely touches.
    """
    cpu = time.thread_time() - cpu
    total = sum(checker.count for checker in checkers)
    end = max(checker.finished_at for checker in checkers)  # type: ignore[type-var]
    for checker in checkers:
        checker.verify()
    return total / (end - start), 1e6 * cpu / total


def _job_counter(n: int, waiter: asyncio.Future) -> Callable[[Any], None]:
    """A ``done`` observer for ``n`` jobs: resolves ``waiter`` at the last."""
    remaining = [n]

    def on_done(event: Any) -> None:
        remaining[0] -= 1
        if not remaining[0]:
            waiter.set_result(None)

    return on_done


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
        return ProcessBaseline(loop, parts.get("start_method", "spawn"))
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
