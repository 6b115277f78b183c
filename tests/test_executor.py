"""TraitsExecutor: states, stop, shutdown, ownership, bad input (threads, asyncio)."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest

import task_functions as tf
from conftest import wait_done
from offload.api import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXECUTING,
    FAILED,
    RUNNING,
    STOPPED,
    STOPPING,
    WAITING,
    AsyncioEventLoop,
    MultiprocessingContext,
    MultithreadingContext,
    TraitsExecutor,
    submit_call,
    submit_iteration,
    submit_progress,
)


@pytest.fixture
def loop(offload_assistant):
    return offload_assistant.event_loop


def record_states(executor):
    states = [executor.state]
    executor.observe(lambda e: states.append(e.new), "state")
    return states


def test_initial_state(loop):
    executor = TraitsExecutor(event_loop=loop)
    assert executor.state == RUNNING and executor.running and not executor.stopped
    executor.shutdown(timeout=10)
    assert executor.state == STOPPED and executor.stopped and not executor.running


def test_state_is_read_only(loop):
    executor = TraitsExecutor(event_loop=loop)
    with pytest.raises(Exception, match="read only"):
        executor.state = STOPPED
    executor.shutdown(timeout=10)


def test_stop_with_no_tasks_goes_straight_to_stopped(loop):
    executor = TraitsExecutor(event_loop=loop)
    states = record_states(executor)
    executor.stop()
    assert states == [RUNNING, STOPPING, STOPPED]


def test_stop_cancels_and_stops_once_tasks_end(loop, offload_assistant, tmp_path):
    executor = TraitsExecutor(event_loop=loop)
    states = record_states(executor)
    release = str(tmp_path / "release")
    future = submit_call(executor, tf.wait_for_file, release)
    offload_assistant.run_until(future, "state", lambda f: f.state == EXECUTING)
    executor.stop()
    assert executor.state == STOPPING
    assert future.state == "cancelling"
    tf.touch(release)
    offload_assistant.run_until(executor, "stopped", lambda e: e.stopped)
    assert future.state == CANCELLED
    assert states == [RUNNING, STOPPING, STOPPED]


@pytest.mark.parametrize("context_class", [MultithreadingContext, MultiprocessingContext])
def test_stop_withdraws_waiting_tasks_before_it_frees_a_worker(
    context_class, loop, offload_assistant, tmp_path
):
    # Two workers run a and b; c waits.  Cancelling b lets its observer
    # release a, whose worker is then free at once: had stop() not yet
    # withdrawn c (it cancelled in submission order), that worker ran c,
    # which a cancel cannot stop once it runs.
    context = context_class()
    try:
        check_stop_withdraws_first(context, loop, offload_assistant, tmp_path)
    finally:
        context.close()


def check_stop_withdraws_first(context, loop, offload_assistant, tmp_path):
    executor = TraitsExecutor(context=context, event_loop=loop, max_workers=2)
    release_a, release_c = str(tmp_path / "release-a"), str(tmp_path / "release-c")
    c_started = tmp_path / "c-started"
    a = submit_call(executor, tf.wait_for_file, release_a)
    b = submit_call(executor, tf.wait_for_file, str(tmp_path / "release-b"))
    c = submit_call(executor, tf.mark_then_wait, str(c_started), release_c)
    for running in (a, b):
        offload_assistant.run_until(
            running, "state", lambda f: f.state == EXECUTING, timeout=30
        )
    assert c.state == WAITING

    def free_a_worker(event):
        if event.new == CANCELLING:
            tf.touch(release_a)
            # Long enough for a's worker to take c, if c were still queued.
            deadline = time.monotonic() + 1.0
            while not c_started.exists() and time.monotonic() < deadline:
                time.sleep(0.005)

    b.observe(free_a_worker, "state")
    try:
        executor.stop()
        assert not c_started.exists(), "a queued task ran after stop()"
    finally:
        tf.touch(release_c)
        tf.touch(str(tmp_path / "release-b"))
        executor.shutdown(timeout=20)
    assert (a.state, b.state, c.state) == (CANCELLED, CANCELLED, CANCELLED)
    assert not c_started.exists()


def test_stop_twice_is_an_error(loop):
    executor = TraitsExecutor(event_loop=loop)
    executor.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        executor.stop()


def test_submit_after_stop_is_an_error(loop):
    executor = TraitsExecutor(event_loop=loop)
    executor.stop()
    with pytest.raises(RuntimeError, match="'stopped'.*create a new executor"):
        submit_call(executor, tf.square, 2)


@pytest.mark.parametrize("submit", [submit_call, submit_iteration, submit_progress])
def test_non_callable_is_a_type_error(loop, submit):
    executor = TraitsExecutor(event_loop=loop)
    with pytest.raises(TypeError, match="needs a callable"):
        submit(executor, 42)
    assert executor.running
    executor.shutdown(timeout=10)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError), ("2", TypeError), (1.5, TypeError), (True, TypeError)])
def test_bad_max_workers(loop, bad, error):
    with pytest.raises(error, match="max_workers"):
        TraitsExecutor(event_loop=loop, max_workers=bad)


def test_worker_pool_and_max_workers_together_is_a_type_error(loop):
    with concurrent.futures.ThreadPoolExecutor() as pool:
        with pytest.raises(TypeError, match="max_workers"):
            TraitsExecutor(event_loop=loop, worker_pool=pool, max_workers=2)


def test_bad_context_and_event_loop_types(loop):
    with pytest.raises(TypeError, match="IParallelContext"):
        TraitsExecutor(event_loop=loop, context="threads")
    with pytest.raises(TypeError, match="IEventLoop"):
        TraitsExecutor(event_loop="asyncio")
    with pytest.raises(TypeError, match="concurrent.futures.Executor"):
        TraitsExecutor(event_loop=loop, worker_pool=object())


def test_closed_context_is_an_error(loop):
    context = MultithreadingContext()
    context.close()
    with pytest.raises(RuntimeError, match="closed"):
        TraitsExecutor(event_loop=loop, context=context)


def test_thread_cancel_flags_start_unset_and_are_set_one_by_one():
    with MultithreadingContext() as context:
        flags = [context.cancel_flag() for _ in range(3)]
        assert [flag.is_set() for flag in flags] == [False, False, False]
        flags[1].set()
        flags[1].set()
        assert [flag.is_set() for flag in flags] == [False, True, False]
        # The unset value is the class's: setting one must not set the next.
        assert not context.cancel_flag().is_set()


def test_user_pool_is_not_shut_down(loop, offload_assistant):
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        executor = TraitsExecutor(event_loop=loop, worker_pool=pool)
        future = submit_call(executor, tf.square, 3)
        wait_done(offload_assistant, future)
        executor.shutdown(timeout=10)
        # Still usable by its owner.
        assert pool.submit(tf.square, 4).result(timeout=10) == 16


def test_a_task_queued_in_a_user_pool_is_withdrawn_by_cancel(loop, offload_assistant):
    # A pool that is not offload's gets concurrent.futures' own protocol:
    # the task's pool future is cancelled, and its done callback ends it.
    release = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        executor = TraitsExecutor(event_loop=loop, worker_pool=pool)
        try:
            blocker = submit_call(executor, release.wait, 30)
            queued = submit_call(executor, tf.square, 2)
            assert queued.cancel()
            wait_done(offload_assistant, queued)
            assert queued.state == CANCELLED
            assert not blocker.done
        finally:
            release.set()
        wait_done(offload_assistant, blocker)
        assert blocker.result is True
        executor.shutdown(timeout=10)


def test_user_pool_that_cancels_its_queue_fails_the_queued_task(loop, offload_assistant):
    release = threading.Event()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    executor = TraitsExecutor(event_loop=loop, worker_pool=pool)
    try:
        blocker = submit_call(executor, release.wait, 30)
        queued = submit_call(executor, tf.square, 2)
        pool.shutdown(wait=False, cancel_futures=True)
        wait_done(offload_assistant, queued)
        assert queued.state == FAILED
        assert "cancelled this task before it ran" in queued.exception[1]
    finally:
        release.set()
    wait_done(offload_assistant, blocker)
    executor.shutdown(timeout=10)
    pool.shutdown(wait=True)


def test_user_context_is_not_closed_and_owned_context_is(loop):
    context = MultithreadingContext()
    executor = TraitsExecutor(event_loop=loop, context=context)
    executor.shutdown(timeout=10)
    assert not context.closed
    context.close()
    owned = TraitsExecutor(event_loop=loop)
    owned_context = owned._context
    owned.shutdown(timeout=10)
    assert owned_context.closed


def test_thread_pool_argument_is_deprecated(loop):
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        with pytest.warns(DeprecationWarning, match="worker_pool"):
            executor = TraitsExecutor(pool, event_loop=loop)
        executor.shutdown(timeout=10)
        with pytest.warns(DeprecationWarning):
            executor = TraitsExecutor(thread_pool=pool, event_loop=loop)
        executor.shutdown(timeout=10)


def test_deprecated_submit_methods_work_and_warn(loop, offload_assistant):
    # The warnings keep Traits Futures' wording, which its users' tests check.
    executor = TraitsExecutor(event_loop=loop)
    with pytest.warns(DeprecationWarning, match="submit_call method is deprecated"):
        call = executor.submit_call(tf.square, 5)
    with pytest.warns(DeprecationWarning, match="submit_iteration method is deprecated"):
        iteration = executor.submit_iteration(tf.count_up, 2)
    with pytest.warns(DeprecationWarning, match="submit_progress method is deprecated"):
        progress = executor.submit_progress(tf.report, 2)
    for future in (call, iteration, progress):
        wait_done(offload_assistant, future)
    assert (call.result, iteration.state, progress.result) == (25, COMPLETED, 2)
    executor.shutdown(timeout=10)


def test_shutdown_delivers_final_messages_without_running_the_loop(loop):
    executor = TraitsExecutor(event_loop=loop)
    futures = [submit_call(executor, tf.square, i) for i in range(50)]
    executor.shutdown(timeout=10)
    assert executor.stopped
    # Every future ended; those that ran before cancellation completed.
    assert all(f.done for f in futures)
    assert {f.state for f in futures} <= {COMPLETED, CANCELLED}


def test_shutdown_timeout_raises_and_stays_stopping(loop, tmp_path):
    executor = TraitsExecutor(event_loop=loop)
    release = str(tmp_path / "release")
    future = submit_call(executor, tf.wait_for_file, release)
    # "1 tasks still running": Traits Futures' wording, which its users' tests check.
    with pytest.raises(RuntimeError, match="1 tasks still running"):
        executor.shutdown(timeout=0.2)
    assert executor.state == STOPPING
    tf.touch(release)
    executor.shutdown(timeout=10)
    assert executor.stopped and future.state == CANCELLED


def test_shutdown_on_stopped_executor_does_nothing(loop):
    executor = TraitsExecutor(event_loop=loop)
    executor.shutdown(timeout=10)
    executor.shutdown(timeout=10)
    assert executor.stopped


def test_default_event_loop_error_names_the_fix(monkeypatch):
    import sys

    # Simulate no GUI support at all.
    monkeypatch.setitem(sys.modules, "offload._event_loops.ets", None)
    with pytest.raises(RuntimeError, match="AsyncioEventLoop"):
        TraitsExecutor()


def test_user_observer_error_does_not_break_delivery(loop, offload_assistant):
    from traits.api import pop_exception_handler, push_exception_handler

    push_exception_handler(reraise_exceptions=True)
    try:
        executor = TraitsExecutor(event_loop=loop)
        bad = submit_call(executor, tf.square, 2)

        def explode(event):
            raise ZeroDivisionError("observer bug")

        bad.observe(explode, "done")
        good = submit_call(executor, tf.square, 3)
        wait_done(offload_assistant, good)
        wait_done(offload_assistant, bad)
        executor.shutdown(timeout=10)
        assert executor.stopped and bad.result == 4 and good.result == 9
    finally:
        pop_exception_handler()


def test_asyncio_loop_rejects_non_loop():
    with pytest.raises(TypeError, match="asyncio event loop"):
        AsyncioEventLoop(event_loop="not a loop")
