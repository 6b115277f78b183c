"""What application code does every day, on every context and event loop.

Each test is a pattern from issue 29 as a user writes it:

1. ``executor.shutdown()`` inside an observer of ``done``;
2. an observer that raises ``SystemExit`` or ``KeyboardInterrupt``, with the
   ``finally: executor.shutdown()`` the docs recommend;
4. an observer's exception under Traits' ``reraise_exceptions`` handler (how
   ETS test suites make observer errors fail tests);
5. ``shutdown()`` or ``stop()`` from another thread;
6. an executor dropped without ``shutdown()``.

(Pattern 3, nested event loops in observers, is GUI-only:
``test_user_patterns_gui.py``.)
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import traits.api
import traits.observation.api

import task_functions as tf
from conftest import wait_done
from leak_check import leftovers, take_snapshot
from offload.api import (
    CANCELLED,
    COMPLETED,
    EXECUTING,
    RUNNING,
    STOPPED,
    AsyncioEventLoop,
    MultiprocessingContext,
    MultithreadingContext,
    TraitsExecutor,
    submit_call,
    submit_progress,
)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait (without an event loop) until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {condition}")
        time.sleep(0.01)


# 1. shutdown() inside an observer ---------------------------------------------


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["no-timeout", "timeout"])
def test_shutdown_in_a_done_observer_returns_stopped(executor, assistant, timeout):
    seen: list[tuple[str, str]] = []
    errors: list[BaseException] = []

    def shut_down_when_done(event: Any) -> None:
        try:
            executor.shutdown(timeout=timeout)
        except Exception as error:  # reported below: Traits would log it
            errors.append(error)
        seen.append((executor.state, future.state))

    future = submit_call(executor, tf.square, 3)
    future.observe(shut_down_when_done, "done")
    wait_done(assistant, future)
    assert errors == []
    assert seen == [(STOPPED, COMPLETED)]
    assert future.result == 9


def test_shutdown_in_an_observer_waits_for_the_other_tasks(executor, assistant, tmp_path):
    # The finished task does not count as running; the one still running is
    # cancelled, and its end is delivered inside the observer's shutdown.
    started = str(tmp_path / "started")
    other = submit_progress(executor, tf.report_until_cancelled, started)
    assistant.run_until(other, "state", lambda f: f.state == EXECUTING, timeout=20)
    seen: list[tuple[str, str]] = []

    def shut_down_when_done(event: Any) -> None:
        executor.shutdown(timeout=20)
        seen.append((executor.state, other.state))

    quick = submit_call(executor, tf.square, 2)
    quick.observe(shut_down_when_done, "done")
    wait_done(assistant, quick)
    assert seen == [(STOPPED, CANCELLED)]
    assert quick.result == 4


def test_tasks_ending_together_survive_a_shutdown_in_the_first_ones_observer(
    executor, assistant
):
    futures = [submit_call(executor, tf.square, i) for i in range(8)]
    ended: list[int] = []

    def on_done(event: Any) -> None:
        ended.append(futures.index(event.object))
        if len(ended) == 1:
            executor.shutdown(timeout=20)

    for future in futures:
        future.observe(on_done, "done")
    assistant.run_until(executor, "stopped", lambda e: e.stopped, timeout=20)
    # Each future ended once, as its task's messages said (a task that had
    # not started when the shutdown cancelled it ends CANCELLED).
    assert sorted(ended) == list(range(8))
    for i, future in enumerate(futures):
        assert future.state in (COMPLETED, CANCELLED)
        if future.state == COMPLETED:
            assert future.result == i * i


def test_stopped_fires_after_the_last_futures_observers(executor, assistant, tmp_path):
    # Unregistering a task before its observers run must not make the
    # executor STOPPED before its last future is done.
    order: list[str] = []
    release = str(tmp_path / "release")
    future = submit_call(executor, tf.wait_for_file, release)
    future.observe(lambda event: order.append("future done"), "done")
    executor.observe(lambda event: order.append(f"executor {event.new}"), "state")
    assistant.run_until(future, "state", lambda f: f.state == EXECUTING, timeout=20)
    executor.stop()
    tf.touch(release)
    assistant.run_until(executor, "stopped", lambda e: e.stopped, timeout=20)
    assert order == ["executor stopping", "future done", "executor stopped"]


# 2. SystemExit / KeyboardInterrupt from an observer ------------------------------


@pytest.mark.parametrize("leave", [SystemExit, KeyboardInterrupt])
def test_an_observer_that_exits_leaves_nothing_registered(executor, assistant, leave):
    future = submit_call(executor, tf.square, 2)

    def exit_when_done(event: Any) -> None:
        raise leave("the user's exit")

    future.observe(exit_when_done, "done")
    with pytest.raises(leave):
        try:
            wait_done(assistant, future)
        finally:
            executor.shutdown(timeout=5)
    assert executor.stopped
    assert future.result == 4


def test_an_exit_while_stopping_still_stops_the_executor(executor, assistant, tmp_path):
    release = str(tmp_path / "release")
    future = submit_call(executor, tf.wait_for_file, release)
    assistant.run_until(future, "state", lambda f: f.state == EXECUTING, timeout=20)

    def interrupt(event: Any) -> None:
        raise KeyboardInterrupt

    future.observe(interrupt, "done")
    executor.stop()
    tf.touch(release)
    with pytest.raises(KeyboardInterrupt):
        assistant.run_until(executor, "stopped", lambda e: e.stopped, timeout=20)
    assert executor.stopped
    assert future.state == CANCELLED


def test_messages_of_other_tasks_come_after_an_observer_exits(executor, assistant):
    futures = [submit_call(executor, tf.square, i) for i in range(6)]
    interrupted: list[int] = []

    def interrupt_once(event: Any) -> None:
        if not interrupted:
            interrupted.append(futures.index(event.object))
            raise KeyboardInterrupt

    for future in futures:
        future.observe(interrupt_once, "done")
    with pytest.raises(KeyboardInterrupt):
        for future in futures:
            wait_done(assistant, future)
    for future in futures:
        wait_done(assistant, future)
    assert [future.result for future in futures] == [i * i for i in range(6)]
    assert len(interrupted) == 1
    executor.shutdown(timeout=20)
    assert executor.stopped


# 4. Traits' exception handler decides -----------------------------------------------


class ObserverError(Exception):
    """What the user's observer raises."""


def fail_when_done(event: Any) -> None:
    if event.new:
        raise ObserverError(f"raised by an observer of {event.name}")


@pytest.fixture
def reraise() -> Iterator[None]:
    """Traits re-raises observers' exceptions (``observe`` and
    ``on_trait_change`` both), as ETS test suites set it up."""
    traits.observation.api.push_exception_handler(reraise_exceptions=True)
    traits.api.push_exception_handler(reraise_exceptions=True)
    try:
        yield
    finally:
        traits.api.pop_exception_handler()
        traits.observation.api.pop_exception_handler()


def test_reraised_observer_error_comes_out_of_run_until(executor, assistant, reraise):
    future = submit_call(executor, tf.square, 3)
    future.observe(fail_when_done, "done")
    with pytest.raises(ObserverError, match="observer of done"):
        wait_done(assistant, future)
    assert future.result == 9
    # Delivery goes on.
    other = submit_call(executor, tf.square, 4)
    wait_done(assistant, other)
    assert other.result == 16


def test_reraised_on_trait_change_error_comes_out_of_run_until(executor, assistant, reraise):
    future = submit_call(executor, tf.square, 3)

    def fail() -> None:
        raise ObserverError("raised by an on_trait_change handler")

    future.on_trait_change(fail, "done")
    with pytest.raises(ObserverError, match="on_trait_change"):
        wait_done(assistant, future)
    future.on_trait_change(fail, "done", remove=True)


def test_reraised_error_comes_out_of_exercise_event_loop(executor, assistant, reraise):
    future = submit_progress(executor, tf.report, 3)
    future.observe(fail_when_done, "done")
    with pytest.raises(ObserverError):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assistant.exercise_event_loop()
    assert future.result == 3


def test_reraised_errors_come_out_of_shutdown_after_it_finished(executor, assistant, reraise):
    futures = [submit_call(executor, tf.square, i) for i in range(3)]
    for future in futures:
        future.observe(fail_when_done, "done")
    with pytest.raises(ObserverError):
        executor.shutdown(timeout=20)
    # The shutdown went to its end before it raised.
    assert executor.stopped
    assert all(future.done for future in futures)


def test_every_message_is_delivered_despite_reraised_errors(executor, assistant, reraise):
    future = submit_progress(executor, tf.report, 20)
    seen: list[int] = []

    def fail_on_odd(event: Any) -> None:
        seen.append(event.new)
        if event.new % 2:
            raise ObserverError(event.new)

    future.observe(fail_on_odd, "progress")
    errors = 0
    deadline = time.monotonic() + 20
    while not future.done and time.monotonic() < deadline:
        try:
            wait_done(assistant, future)
        except ObserverError:
            errors += 1
    assert seen == list(range(20))
    assert errors == 10
    assert future.result == 20


def test_with_traits_default_handler_an_observer_error_is_logged(executor, assistant, caplog):
    future = submit_call(executor, tf.square, 3)
    future.observe(fail_when_done, "done")
    with caplog.at_level(logging.ERROR):
        wait_done(assistant, future)
    assert future.result == 9
    assert any(
        record.exc_info and record.exc_info[0] is ObserverError for record in caplog.records
    )


def test_pytest_fixture_helpers_raise_reraised_errors(offload_assistant, traits_executor, reraise):
    future = submit_call(traits_executor, tf.square, 5)
    future.observe(fail_when_done, "done")
    with pytest.raises(ObserverError):
        offload_assistant.run_until(future, "done", lambda f: f.done)


def test_on_asyncio_a_reraised_error_goes_to_the_loops_exception_handler(reraise):
    event_loop = AsyncioEventLoop()
    loop = event_loop.event_loop
    contexts: list[dict] = []
    loop.set_exception_handler(lambda loop, context: contexts.append(context))
    executor = TraitsExecutor(event_loop=event_loop)
    try:
        bad = submit_call(executor, tf.square, 2)
        bad.observe(fail_when_done, "done")
        good = submit_call(executor, tf.square, 3)

        async def both() -> list[Any]:
            return [await bad, await good]

        assert loop.run_until_complete(asyncio.wait_for(both(), 20)) == [4, 9]
    finally:
        executor.shutdown(timeout=20)
        event_loop.close()
    assert [type(context.get("exception")) for context in contexts] == [ObserverError]


# 5. stop() and shutdown() belong to the executor's thread -----------------------------


@pytest.mark.parametrize("method", ["shutdown", "stop"])
def test_stopping_from_another_thread_is_refused(executor, assistant, tmp_path, method):
    release = str(tmp_path / "release")
    future = submit_call(executor, tf.wait_for_file, release)
    assistant.run_until(future, "state", lambda f: f.state == EXECUTING, timeout=20)
    errors: list[BaseException] = []

    def call_it() -> None:
        try:
            getattr(executor, method)()
        except RuntimeError as error:
            errors.append(error)

    thread = threading.Thread(target=call_it, name="a-worker-of-the-app")
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert len(errors) == 1
    message = str(errors[0])
    assert f"{method}()" in message
    assert threading.current_thread().name in message
    assert "a-worker-of-the-app" in message
    # Nothing changed.
    assert executor.state == RUNNING
    assert future.state == EXECUTING
    tf.touch(release)
    wait_done(assistant, future)
    assert future.result == release


# 6. An executor dropped without shutdown() ---------------------------------------------

#: Contexts whose executors are dropped: (context kind, event loop kind).
DROPPED = [
    pytest.param(("thread", "asyncio"), id="thread-asyncio"),
    pytest.param(("process", "asyncio"), id="process-asyncio", marks=pytest.mark.process),
    pytest.param(("dask", "asyncio"), id="dask-asyncio", marks=pytest.mark.dask),
]


def released_since(before: Any) -> Callable[[], bool]:
    """A function telling whether every thread, child process and descriptor
    that appeared since the snapshot ``before`` has gone (shared memory is
    the context's cancel flags, which the test closes later)."""

    def released() -> bool:
        return not [problem for problem in leftovers(before) if "/dev/shm" not in problem]

    return released


@pytest.mark.parametrize("matrix", DROPPED)
def test_a_dropped_idle_executor_warns_and_releases(context, assistant, context_kind):
    released = released_since(take_snapshot())
    executor = TraitsExecutor(context=context, event_loop=assistant.event_loop)
    futures = [submit_call(executor, tf.square, i) for i in range(4)]
    for future in futures:
        wait_done(assistant, future)
    if context_kind != "dask":
        assert not released(), "the executor started no worker"
    with pytest.warns(ResourceWarning, match=r"shutdown\(\)"):
        del executor
        gc.collect()
    wait_for(released)
    assert [future.result for future in futures] == [0, 1, 4, 9]


@pytest.mark.parametrize("matrix", DROPPED)
def test_a_dropped_executor_still_delivers_its_running_tasks(
    context, assistant, context_kind, tmp_path
):
    released = released_since(take_snapshot())
    executor = TraitsExecutor(context=context, event_loop=assistant.event_loop)
    release = str(tmp_path / "release")
    started = str(tmp_path / "started")
    running = submit_call(executor, tf.mark_then_wait, started, release)
    progress = submit_progress(executor, tf.report, 50)
    wait_for(lambda: os.path.exists(started), timeout=60)
    with pytest.warns(ResourceWarning, match=r"shutdown\(\)"):
        del executor
        gc.collect()
    tf.touch(release)
    wait_done(assistant, running, timeout=30)
    wait_done(assistant, progress, timeout=30)
    assert running.result == release
    assert progress.result == 50
    assistant.exercise_event_loop()
    wait_for(released)


def test_an_executor_dropped_off_its_thread_is_released_by_its_loop(offload_assistant):
    # The garbage collector may run a dropped executor's finalizer on any
    # thread: what only the executor's thread may do waits for its loop.
    released = released_since(take_snapshot())
    executor = TraitsExecutor(event_loop=offload_assistant.event_loop)
    future = submit_call(executor, tf.square, 7)
    wait_done(offload_assistant, future)
    holder = [executor]
    del executor
    dropped = threading.Event()

    def drop() -> None:
        with pytest.warns(ResourceWarning, match=r"shutdown\(\)"):
            holder.clear()
        dropped.set()

    thread = threading.Thread(target=drop)
    thread.start()
    thread.join(timeout=20)
    assert dropped.is_set()
    offload_assistant.exercise_event_loop()
    wait_for(released)


def test_an_executor_that_was_shut_down_does_not_warn(offload_assistant):
    executor = TraitsExecutor(event_loop=offload_assistant.event_loop)
    wait_done(offload_assistant, submit_call(executor, tf.square, 2))
    executor.shutdown(timeout=20)
    del executor
    gc.collect()  # filterwarnings=error: a ResourceWarning here would fail


@pytest.mark.process
def test_a_dropped_executor_leaves_a_pool_and_context_passed_in_alone(offload_assistant):
    with MultiprocessingContext() as context:
        pool = context.worker_pool(max_workers=1)
        try:
            executor = TraitsExecutor(
                context=context, event_loop=offload_assistant.event_loop, worker_pool=pool
            )
            wait_done(offload_assistant, submit_call(executor, tf.square, 2))
            with pytest.warns(ResourceWarning):
                del executor
                gc.collect()
            offload_assistant.exercise_event_loop()
            # Still the caller's, and still working.
            assert not context.closed
            assert pool.submit(tf.square, 5).result(timeout=30) == 25
        finally:
            pool.shutdown(wait=True)


def test_a_dropped_executor_releases_an_owned_thread_context(offload_assistant):
    executor = TraitsExecutor(event_loop=offload_assistant.event_loop)
    context = executor._context  # the default one, the executor's own
    assert isinstance(context, MultithreadingContext)
    with pytest.warns(ResourceWarning):
        del executor
        gc.collect()
    assert context.closed


def test_an_executor_dropped_after_stop_is_released_silently(offload_assistant, tmp_path):
    # What a GUI application does: stop it, forget it, carry on.
    released = released_since(take_snapshot())
    executor = TraitsExecutor(event_loop=offload_assistant.event_loop)
    release = str(tmp_path / "release")
    future = submit_call(executor, tf.wait_for_file, release)
    offload_assistant.run_until(future, "state", lambda f: f.state == EXECUTING, timeout=20)
    executor.stop()
    del executor
    gc.collect()  # filterwarnings=error: a ResourceWarning here would fail
    tf.touch(release)
    wait_done(offload_assistant, future)
    assert future.state == CANCELLED
    offload_assistant.exercise_event_loop()
    wait_for(released)


def test_an_awaiting_coroutine_wakes_even_if_an_observer_of_done_raises(reraise):
    event_loop = AsyncioEventLoop()
    loop = event_loop.event_loop
    errors: list[BaseException] = []
    loop.set_exception_handler(lambda loop, context: errors.append(context["exception"]))
    executor = TraitsExecutor(event_loop=event_loop)
    try:
        future = submit_call(executor, tf.wait_for_file, "/nonexistent/never", 0.2)
        future.observe(fail_when_done, "done")

        async def wait() -> str:
            try:
                await future
            except Exception as error:  # the task's own TimeoutError
                return type(error).__name__
            return "completed"

        # Awaiting before the task ends: the waiter is registered.
        assert loop.run_until_complete(asyncio.wait_for(wait(), 20)) == "TaskFailed"
    finally:
        executor.shutdown(timeout=20)
        event_loop.close()
    assert [type(error) for error in errors] == [ObserverError]
