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
