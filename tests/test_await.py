"""Futures are awaitable from the asyncio loop that delivers their messages."""

from __future__ import annotations

import asyncio

import pytest

import task_functions as tf
from offload.api import TaskFailed, submit_call, submit_iteration, submit_progress


def run(traits_executor, coroutine):
    loop = traits_executor._event_loop.event_loop
    return loop.run_until_complete(asyncio.wait_for(coroutine, 20))


def test_await_result(traits_executor):
    async def main():
        call = submit_call(traits_executor, tf.square, 9)
        iteration = submit_iteration(traits_executor, tf.count_up_and_return, 2, "r")
        progress = submit_progress(traits_executor, tf.report, 3)
        return await call, await iteration, await progress

    assert run(traits_executor, main()) == (81, "r", 3)


def test_await_failed_future_raises_task_failed(traits_executor):
    async def main():
        await submit_call(traits_executor, tf.fail, "nope")

    with pytest.raises(TaskFailed) as info:
        run(traits_executor, main())
    assert info.value.exception[:2] == ("ValueError", "nope")
    assert "Traceback" in info.value.exception[2]
    assert isinstance(info.value.__cause__, ValueError)


def test_await_cancelled_future_raises_cancelled_error(traits_executor, tmp_path):
    release = str(tmp_path / "release")

    async def main():
        future = submit_call(traits_executor, tf.wait_for_file, release)
        future.cancel()
        tf.touch(release)
        try:
            await future
        except asyncio.CancelledError:
            return "cancelled"
        return "not cancelled"

    assert run(traits_executor, main()) == "cancelled"


def test_await_done_future_returns_at_once(traits_executor):
    async def main():
        future = submit_call(traits_executor, tf.square, 2)
        await future
        return await future

    assert run(traits_executor, main()) == 4


def test_many_coroutines_awaiting_one_future_all_resume(traits_executor, tmp_path):
    release = str(tmp_path / "release")

    async def main():
        future = submit_call(traits_executor, tf.wait_for_file, release)
        waiting = [asyncio.ensure_future(_await(future)) for _ in range(3)]
        await _until(lambda: len(future._done_callbacks or ()) == 3)
        tf.touch(release)
        return await asyncio.gather(*waiting)

    assert run(traits_executor, main()) == [release] * 3


async def _await(future):
    return await future


async def _until(condition, timeout=10.0):
    """Yield to the loop until ``condition()`` holds; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0)


def test_a_cancelled_awaiter_leaves_the_future_and_other_awaiters_alone(
    traits_executor, tmp_path
):
    release = str(tmp_path / "release")

    async def main():
        future = submit_call(traits_executor, tf.wait_for_file, release)
        patient = asyncio.ensure_future(_await(future))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(_await(future), 0.01)
        # The impatient awaiter is gone from the future's wake-up list.
        assert len(future._done_callbacks) == 1
        tf.touch(release)
        return await patient, future.state, future._done_callbacks

    assert run(traits_executor, main()) == (release, "completed", None)


def test_an_awaiter_that_cannot_be_woken_does_not_starve_the_others(
    traits_executor, tmp_path, caplog
):
    release = str(tmp_path / "release")

    def broken() -> None:
        raise RuntimeError("this waker is broken")

    async def main():
        future = submit_call(traits_executor, tf.wait_for_file, release)
        waiting = asyncio.ensure_future(_await(future))
        await _until(lambda: future._done_callbacks)
        future._done_callbacks.insert(0, broken)
        tf.touch(release)
        return await waiting

    assert run(traits_executor, main()) == release
    assert "error waking a coroutine awaiting" in caplog.text


def test_await_in_another_loop_than_the_executors_is_a_clear_error(traits_executor):
    # The trap: AsyncioEventLoop() inside asyncio.run() makes a loop of its
    # own, which never runs; awaiting one of its futures used to wait forever.
    future = submit_call(traits_executor, tf.square, 3)

    async def main():
        await future

    other = asyncio.new_event_loop()
    try:
        with pytest.raises(RuntimeError, match="event_loop=asyncio.get_running_loop"):
            other.run_until_complete(asyncio.wait_for(main(), 20))
    finally:
        other.close()
    # Nothing was lost: the future still ends in its own loop.
    assert run(traits_executor, _wait(future)) == 9


async def _wait(future):
    return await future


def test_asyncio_run_with_the_running_loop_wrapped_awaits():
    from offload.api import AsyncioEventLoop, TraitsExecutor

    async def main():
        executor = TraitsExecutor(
            event_loop=AsyncioEventLoop(event_loop=asyncio.get_running_loop())
        )
        try:
            return await submit_call(executor, tf.square, 5)
        finally:
            executor.stop()

    assert asyncio.run(asyncio.wait_for(main(), 20)) == 25
