"""Submission from any thread: ``submit_*`` and ``executor.submit`` called
from worker threads, including a task running on a thread context.

What a user relies on:

* the future comes back WAITING, and every change of it (and ``submitted``)
  happens on the executor's thread, as the event loop delivers;
* an observer attached on the main thread from ``submitted`` misses
  nothing, nor one attached on the submitting thread before the main thread
  delivers;
* a submit racing with ``stop()`` / ``shutdown()`` is refused with a clear
  RuntimeError, or its future is cancelled and waited for by that stop:
  never lost, never hanging the shutdown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import task_functions as tf
from conftest import CONTEXTS, EVENT_LOOPS, StateRecorder, load, wait_done
from offload._event_loops.interface import IEventLoop, IPingee
from offload._routing.inbox import Inbox
from offload._routing.protocol import RETURNED
from offload.api import (
    CANCELLED,
    COMPLETED,
    STOPPED,
    WAITING,
    MultiprocessingContext,
    TraitsExecutor,
    submit_call,
    submit_iteration,
    submit_progress,
)
from offload.testing.pytest_plugin import OffloadAssistant

#: States a completed task's future goes through, in order.
PATH = ["waiting", "executing", "completed"]


@pytest.fixture(
    params=[
        "asyncio",
        pytest.param("qt", marks=pytest.mark.gui),
    ]
)
def assistant(request: pytest.FixtureRequest) -> Iterator[OffloadAssistant]:
    event_loop = load(EVENT_LOOPS, request.param)()
    assistant = OffloadAssistant(event_loop)
    yield assistant
    assistant.dispose()
    close = getattr(event_loop, "close", None)
    if close is not None:
        close()


@pytest.fixture
def executor(assistant: OffloadAssistant) -> Iterator[TraitsExecutor]:
    executor = TraitsExecutor(event_loop=assistant.event_loop)
    yield executor
    executor.shutdown(timeout=20)


def in_thread(function: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Run ``function()`` in a new thread; return what it returns (or raise
    what it raised)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, function()))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append((False, exc))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the thread did not finish"
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def run_until_true(assistant: OffloadAssistant, condition: Callable[[], bool],
                   timeout: float = 20.0) -> None:
    """Run the event loop until ``condition()`` holds (checked every turn)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s")
        assistant.exercise_event_loop()


class ThreadRecorder(StateRecorder):
    """A StateRecorder that also notes which thread each change came on."""

    def __init__(self, future: Any) -> None:
        self.threads: set[int] = set()
        super().__init__(future)

    def _record(self, event: Any) -> None:
        self.threads.add(threading.get_ident())
        super()._record(event)


# The basics -------------------------------------------------------------------


@pytest.mark.parametrize("submit, args, expected", [
    (submit_call, (tf.square, 3), 9),
    (submit_iteration, (tf.count_up_and_return, 2, "end"), "end"),
    (submit_progress, (tf.report, 2), 2),
])
def test_submit_from_a_thread(assistant, executor, submit, args, expected):
    def submit_there():
        future = submit(executor, *args)
        # Returned WAITING; observed on the submitting thread at once.
        return future, future.state, ThreadRecorder(future)

    future, state, recorder = in_thread(submit_there)
    assert state == WAITING
    wait_done(assistant, future)
    assert future.result == expected
    assert recorder.states == PATH
    assert recorder.threads == {threading.get_ident()}


def test_submitted_fires_on_the_main_thread_before_the_first_change(assistant, executor):
    seen = []

    def on_submitted(event):
        future, task = event.new
        # Attached here, on the main thread: it must miss nothing.
        seen.append((threading.get_ident(), future.state, ThreadRecorder(future)))

    executor.observe(on_submitted, "submitted")
    futures = in_thread(lambda: [submit_call(executor, tf.square, n) for n in range(20)])
    run_until_true(assistant, lambda: all(f.done for f in futures))
    assert len(seen) == 20
    for thread, state, recorder in seen:
        assert thread == threading.get_ident()
        assert state == WAITING
        assert recorder.states == PATH
    assert [f.result for f in futures] == [n * n for n in range(20)]


def submit_follow_up(executor: TraitsExecutor, x: int) -> Any:
    """A thread task that submits another task and returns its future."""
    return submit_call(executor, tf.square, x)


def test_a_thread_task_submits_a_follow_up(assistant, executor):
    outer = submit_call(executor, submit_follow_up, executor, 7)
    wait_done(assistant, outer)
    assert outer.state == COMPLETED
    inner = outer.result
    wait_done(assistant, inner)
    assert inner.result == 49


def test_executor_submit_from_a_thread(assistant, executor):
    from offload._futures.call import BackgroundCall

    future = in_thread(lambda: executor.submit(BackgroundCall(tf.square, (5,), {})))
    wait_done(assistant, future)
    assert future.result == 25


def test_observers_on_the_submitting_thread_while_the_main_thread_delivers(
    assistant, executor
):
    """Each observer sees an unbroken run of the future's states, however its
    attaching interleaves with the main thread's delivery."""
    recorders: list[ThreadRecorder] = []
    finished = threading.Event()

    def submit_many():
        try:
            for n in range(300):
                recorders.append(ThreadRecorder(submit_call(executor, tf.square, n)))
        finally:
            finished.set()

    thread = threading.Thread(target=submit_many)
    thread.start()
    run_until_true(
        assistant, lambda: finished.is_set() and all(r.future.done for r in recorders)
    )
    thread.join(20)
    assert len(recorders) == 300
    steps = list(zip(PATH[:-1], PATH[1:], strict=True))
    for recorder in recorders:
        # The recorder read the state, then attached its observer: changes
        # the main thread made in between are missed (Traits' ``observe`` is
        # not atomic with a notification on another thread), but what it
        # saw is the rest of the path, unbroken, to the end.
        seen = [(old, new) for name, old, new in recorder.changes if name == "state"]
        assert seen == steps[len(steps) - len(seen):], seen
        assert recorder.threads <= {threading.get_ident()}


# Races with stop() and shutdown() ---------------------------------------------


def hammer(executor: TraitsExecutor, threads: int, stop_now: threading.Event
           ) -> tuple[list[threading.Thread], list[Any], list[str]]:
    """Start ``threads`` threads submitting until refused (or told to stop)."""
    futures: list[Any] = []
    refusals: list[str] = []
    start = threading.Barrier(threads)

    def submit_until_refused():
        start.wait(20)
        while not stop_now.is_set():
            try:
                futures.append(submit_call(executor, tf.square, 2))
            except RuntimeError as exc:
                refusals.append(str(exc))
                return

    workers = [threading.Thread(target=submit_until_refused) for _ in range(threads)]
    for worker in workers:
        worker.start()
    return workers, futures, refusals


def test_submits_racing_with_stop(assistant, executor):
    stop_now = threading.Event()
    workers, futures, refusals = hammer(executor, 4, stop_now)
    try:
        # Deliver while they submit, then stop under them.
        run_until_true(assistant, lambda: sum(f.done for f in futures) >= 200)
        executor.stop()
        run_until_true(assistant, lambda: executor.state == STOPPED)
    finally:
        stop_now.set()
        for worker in workers:
            worker.join(20)
    assert not any(worker.is_alive() for worker in workers)
    # Every thread was refused, clearly; every future it got is done.
    assert len(refusals) == 4
    for message in refusals:
        assert "cannot submit to a TraitsExecutor in state" in message
    assert all(f.done for f in futures)
    assert {f.state for f in futures} <= {COMPLETED, CANCELLED}


def test_submits_racing_with_shutdown(assistant, executor):
    stop_now = threading.Event()
    workers, futures, refusals = hammer(executor, 4, stop_now)
    try:
        run_until_true(assistant, lambda: len(futures) >= 200)
        executor.shutdown(timeout=20)
    finally:
        stop_now.set()
        for worker in workers:
            worker.join(20)
    assert executor.state == STOPPED
    assert len(refusals) == 4
    assert all(f.done for f in futures)


def test_stop_and_shutdown_still_refused_from_a_thread(assistant, executor):
    for method in (executor.stop, executor.shutdown):
        with pytest.raises(RuntimeError, match="must be called from the thread"):
            in_thread(method)
    assert executor.running


@pytest.mark.process
def test_submit_from_a_thread_on_processes(assistant):
    with MultiprocessingContext() as context:
        executor = TraitsExecutor(context=context, event_loop=assistant.event_loop)
        try:
            futures = in_thread(
                lambda: [submit_call(executor, tf.square, n) for n in range(10)]
            )
            run_until_true(assistant, lambda: all(f.done for f in futures))
            assert [f.result for f in futures] == [n * n for n in range(10)]
        finally:
            executor.shutdown(timeout=20)


@pytest.mark.dask
# "context" names the kind, so that the leak check starts the shared
# cluster before its snapshot.
@pytest.mark.parametrize("context", ["dask"])
def test_submit_from_a_thread_on_dask(context, offload_assistant, shared_dask_cluster):
    DaskContext = load(CONTEXTS, context)
    with DaskContext(address=shared_dask_cluster) as dask_context:
        executor = TraitsExecutor(
            context=dask_context, event_loop=offload_assistant.event_loop
        )
        try:
            futures = in_thread(
                lambda: [submit_call(executor, tf.square, n) for n in range(10)]
            )
            run_until_true(offload_assistant, lambda: all(f.done for f in futures))
            assert [f.result for f in futures] == [n * n for n in range(10)]
        finally:
            executor.shutdown(timeout=20)


# The inbox's table of receivers, replaced while another thread adds -------------


class _NoLoop(IEventLoop):
    """An event loop whose pingee does nothing: the test delivers itself."""

    def pingee(self, on_ping: Callable[[], None]) -> IPingee:
        return _NoPingee()

    def event_loop_helper(self) -> Any:
        raise NotImplementedError


class _NoPingee(IPingee):
    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def ping(self) -> None:
        pass


class _Inbox(Inbox):
    sender = None


class _Table(dict):
    """A table of receivers that lets another thread add one at the worst
    moment: while the main thread, having found the table empty after a
    delivery, is about to replace it."""

    def __init__(self, add_from_another_thread: Callable[[], None]) -> None:
        super().__init__()
        self.add_from_another_thread: Callable[[], None] | None = add_from_another_thread

    def __len__(self) -> int:
        length = super().__len__()
        add, self.add_from_another_thread = self.add_from_another_thread, None
        if add is not None and length == 0:
            # The main thread sees it empty; the other thread adds now.
            thread = threading.Thread(target=add)
            thread.start()
            thread.join(20)
        return length


def test_a_receiver_added_while_the_main_thread_replaces_the_table():
    """The main thread replaces the emptied table of receivers after a
    delivery; a receiver that another thread adds meanwhile (a submission
    from that thread) must not be lost: its task's messages would go to
    nobody."""
    inbox = _Inbox(_NoLoop(), time_slice=float("inf"))
    inbox.connect(lambda task_id: None)
    received: list[tuple] = []

    def add_from_another_thread() -> None:
        inbox.add_receiver(2, received.append)

    inbox._receivers = _Table(add_from_another_thread)
    inbox.add_receiver(1, lambda message: True)
    inbox.put((1, (RETURNED, None)))
    inbox._deliver()  # task 1 ends: the table is empty, and replaced
    inbox.put((2, ("progress", "kept")))
    inbox._deliver()
    assert received == [("progress", "kept")]
