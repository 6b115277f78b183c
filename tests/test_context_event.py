"""``context.event()``: the ``threading.Event`` API on every context.

Traits Futures documents the event as having the API of
``threading.Event``, and its users' tests (and its own) call
``event.wait(timeout)`` inside tasks and on the main thread.  The
executor's own per-task cancel flags come from ``cancel_flag()`` instead.
"""

from __future__ import annotations

import gc
import pickle
import threading
import time
from typing import Any

import pytest

import event_tasks as et
from conftest import CONTEXTS, load, wait_done
from offload.api import (
    CANCELLED,
    COMPLETED,
    EXECUTING,
    IParallelContext,
    MultiprocessingContext,
    MultithreadingContext,
    TraitsExecutor,
    submit_call,
    submit_progress,
)

#: The contexts, each on asyncio (the event is the context's business).
ON_EVERY_CONTEXT = pytest.mark.parametrize("matrix", [
    pytest.param(("thread", "asyncio"), id="thread"),
    pytest.param(("process", "asyncio"), id="process", marks=pytest.mark.process),
    pytest.param(("dask", "asyncio"), id="dask", marks=pytest.mark.dask),
])

#: Longest a task may take to see an event set on the main thread (s): far
#: above every context's latency, far below "never".
PROMPT = 1.0


@ON_EVERY_CONTEXT
def test_event_has_the_threading_event_api(context):
    event = context.event()
    assert event.is_set() is False
    assert event.wait(0) is False
    assert event.wait(0.01) is False
    event.set()
    assert event.is_set() is True
    assert event.wait() is True
    assert event.wait(0.01) is True
    event.clear()
    assert event.is_set() is False
    assert event.wait(0.01) is False


@ON_EVERY_CONTEXT
def test_events_are_independent(context):
    first, second = context.event(), context.event()
    first.set()
    assert first.is_set() and not second.is_set()


@ON_EVERY_CONTEXT
def test_a_task_waits_on_an_event_set_on_the_main_thread(context, executor, assistant):
    # Traits Futures' own pattern: submit_call(executor, event.wait, timeout).
    event = context.event()
    future = submit_call(executor, event.wait, 20)
    assistant.run_until(future, "state", lambda f: f.state == EXECUTING, timeout=20)
    event.set()
    wait_done(assistant, future)
    assert future.state == COMPLETED
    assert future.result is True


@ON_EVERY_CONTEXT
def test_the_main_thread_waits_for_a_task_and_the_task_wakes_promptly(
    context, executor, assistant
):
    started, release = context.event(), context.event()
    future = submit_call(executor, et.set_then_wait, started, release, 20)
    # The worker sets; the main thread's wait sees it without the loop.
    assert started.wait(20) is True
    set_at = time.monotonic()
    release.set()
    wait_done(assistant, future)
    answer, woke_at = future.result
    assert answer is True
    assert woke_at - set_at < PROMPT


@ON_EVERY_CONTEXT
def test_a_wait_in_a_task_times_out_with_false(context, executor, assistant):
    event = context.event()
    future = submit_call(executor, event.wait, 0.05)
    wait_done(assistant, future)
    assert future.result is False


@ON_EVERY_CONTEXT
def test_a_task_clears_an_event_set_on_the_main_thread(context, executor, assistant):
    event = context.event()
    event.set()
    future = submit_call(executor, et.clear_and_read, event)
    wait_done(assistant, future)
    assert future.result is False
    assert event.is_set() is False


@ON_EVERY_CONTEXT
def test_the_event_of_a_closed_context_is_refused(context_kind, request):
    if context_kind == "dask":
        context = load(CONTEXTS, "dask")(address=request.getfixturevalue("shared_dask_cluster"))
    else:
        context = load(CONTEXTS, context_kind)()
    context.close()
    with pytest.raises(RuntimeError, match="closed"):
        context.event()


def test_a_thread_event_is_a_threading_event():
    with MultithreadingContext() as context:
        assert isinstance(context.event(), threading.Event)


def _wait_and_note(event: Any, woke: list) -> None:
    woke.append((event.wait(20), time.monotonic()))


@pytest.mark.process
def test_a_process_event_wakes_a_long_waiter_within_a_few_milliseconds():
    # The process event polls shared memory: its pause between looks grows
    # while it waits, up to a bound that sets how late a long wait wakes.
    with MultiprocessingContext() as context:
        latencies = []
        for _ in range(3):
            event = context.event()
            woke: list[tuple[bool, float]] = []
            waiter = threading.Thread(target=_wait_and_note, args=(event, woke))
            waiter.start()
            time.sleep(0.3)  # not synchronisation: lets the pause grow to its bound
            set_at = time.monotonic()
            event.set()
            waiter.join(20)
            assert woke and woke[0][0] is True
            latencies.append(woke[0][1] - set_at)
        # The least of three: one wake-up that the machine's load delayed
        # does not fail the test, a bound of 20 ms does.
        assert min(latencies) < 0.008, latencies


@pytest.mark.process
def test_a_dropped_process_event_never_disturbs_a_later_cancel_flag():
    # A worker may still hold a copy of an event the application dropped
    # (an event made inline in a submit_call); that copy must not write
    # into shared memory that a later task's cancel flag uses.
    with MultiprocessingContext() as context:
        event = context.event()
        worker_copy = pickle.dumps(event)
        del event
        gc.collect()
        flags = [context.cancel_flag() for _ in range(4)]
        for flag in flags:
            flag.set()
        pickle.loads(worker_copy).clear()
        assert [flag.is_set() for flag in flags] == [True] * 4


class DelegatingContext(IParallelContext):
    """A third party's context, written before ``cancel_flag()`` existed:
    only the abstract methods."""

    def __init__(self) -> None:
        self.inner = MultithreadingContext()
        self.events = 0

    def worker_pool(self, *, max_workers: int | None = None) -> Any:
        return self.inner.worker_pool(max_workers=max_workers)

    def event(self) -> Any:
        self.events += 1
        return self.inner.event()

    def queue(self) -> Any:
        return self.inner.queue()

    def message_router(self, event_loop: Any) -> Any:
        return self.inner.message_router(event_loop)

    def close(self) -> None:
        self.inner.close()

    @property
    def closed(self) -> bool:
        return self.inner.closed


def _cancel_a_task_on(context: Any, assistant: Any) -> None:
    executor = TraitsExecutor(context=context, event_loop=assistant.event_loop)
    try:
        release = context.event()

        def report_until_released(progress: Any) -> None:
            while not release.wait(0.01):
                progress(None)

        future = submit_progress(executor, report_until_released)
        assistant.run_until(future, "state", lambda f: f.state == EXECUTING)
        assert future.cancel()
        wait_done(assistant, future)
        assert future.state == CANCELLED
        release.set()
    finally:
        executor.shutdown(timeout=20)
        context.close()


def test_a_context_without_cancel_flag_gets_its_cancel_flags_from_event(offload_assistant):
    context = DelegatingContext()
    _cancel_a_task_on(context, offload_assistant)
    # One for the test's own release, one for the task's cancel flag.
    assert context.events == 2


def test_a_registered_context_without_cancel_flag_works(offload_assistant):
    class Registered:
        """Implements the interface without subclassing it."""

        inner = MultithreadingContext()
        worker_pool = inner.worker_pool
        event = inner.event
        queue = inner.queue
        message_router = inner.message_router
        close = inner.close
        closed = property(lambda self: self.inner.closed)

    IParallelContext.register(Registered)
    _cancel_a_task_on(Registered(), offload_assistant)



@pytest.mark.dask
def test_the_event_of_the_embedded_dask_cluster_works_inside_tasks(offload_assistant):
    # The embedded cluster's client is in a helper process: the event goes
    # through the context's own client of that scheduler.
    context = load(CONTEXTS, "dask")(n_workers=1)
    executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
    try:
        started, release = context.event(), context.event()
        future = submit_call(executor, et.set_then_wait, started, release, 20)
        assert started.wait(60) is True
        release.set()
        wait_done(offload_assistant, future, timeout=60)
        assert future.result[0] is True
    finally:
        executor.shutdown(timeout=30)
        context.close()
