"""Large arguments: the thread that submits never waits for a worker to read.

A work item is pickled on the submitting thread (a pickling failure must
fail the future at once, naming the culprit); writing it to the worker's
pipe must not happen there when the pipe cannot take it at once.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import process_tasks as pt
from conftest import wait_done
from offload.api import MultiprocessingContext, TraitsExecutor, submit_call

pytestmark = pytest.mark.process

#: Seconds after which the test resumes a stopped worker whatever happens,
#: so that the old behaviour (a submit blocked until then) fails the test
#: instead of hanging it.
RESUME_AFTER = 5.0

#: Most seconds a submit may take here: pickling 8 MiB costs milliseconds.
SUBMIT_LIMIT = 0.5


@pytest.fixture
def one_worker(offload_assistant):
    with MultiprocessingContext() as context:
        executor = TraitsExecutor(
            context=context, event_loop=offload_assistant.event_loop, max_workers=1
        )
        try:
            yield executor
        finally:
            executor.shutdown(timeout=20)


def stopped_worker(executor, assistant):
    """Start the executor's worker, then stop it (SIGSTOP): it reads nothing."""
    warm = submit_call(executor, pt.pid)
    wait_done(assistant, warm)
    pid = warm.result
    os.kill(pid, signal.SIGSTOP)
    return pid


def payload(size):
    """An argument of ``size`` bytes: bytes, or a NumPy array if asked."""
    return bytes(size)


@pytest.mark.parametrize("kind", ["bytes", "numpy"])
def test_a_large_argument_does_not_wait_for_the_worker_to_read_it(
    one_worker, offload_assistant, kind
):
    if kind == "numpy":
        numpy = pytest.importorskip("numpy")
        argument = numpy.ones(2**20)  # 8 MiB
        expected = float(2**20)
        function = sum_array
    else:
        argument = bytes(8 * 2**20)
        expected = len(argument)
        function = len
    pid = stopped_worker(one_worker, offload_assistant)
    resume = threading.Timer(RESUME_AFTER, os.kill, (pid, signal.SIGCONT))
    resume.start()
    try:
        started = time.perf_counter()
        big = submit_call(one_worker, function, argument)
        big_seconds = time.perf_counter() - started
        # The pool is not locked meanwhile: the next submit queues at once.
        started = time.perf_counter()
        small = submit_call(one_worker, abs, -3)
        small_seconds = time.perf_counter() - started
    finally:
        os.kill(pid, signal.SIGCONT)
        resume.cancel()
        resume.join()
    assert big_seconds < SUBMIT_LIMIT
    assert small_seconds < SUBMIT_LIMIT
    wait_done(offload_assistant, big)
    wait_done(offload_assistant, small)
    assert (big.result, small.result) == (expected, 3)


def sum_array(array):
    return float(array.sum())


def test_large_arguments_queued_behind_a_busy_worker_all_arrive(one_worker, offload_assistant):
    # Sent by the pool's reader thread as the worker frees up, not by the
    # submitting thread.
    sizes = [3 * 2**20 + n for n in range(4)]
    futures = [submit_call(one_worker, len, bytes(size)) for size in sizes]
    for future in futures:
        wait_done(offload_assistant, future)
    assert [future.result for future in futures] == sizes


def test_a_worker_that_dies_while_reading_a_large_argument_fails_only_that_task(
    one_worker, offload_assistant
):
    pid = stopped_worker(one_worker, offload_assistant)
    big = submit_call(one_worker, len, bytes(4 * 2**20))
    # SIGKILL ends a stopped process too; a SIGCONT after it raced with
    # the pool reaping the dead worker (ProcessLookupError, once in CI).
    os.kill(pid, signal.SIGKILL)
    wait_done(offload_assistant, big)
    after = submit_call(one_worker, abs, -1)
    wait_done(offload_assistant, after)
    assert after.result == 1
    # Whether the item reached the dead worker or not, it ends: run on a
    # new worker (the write failed) or FAILED naming the death.
    if big.state == "completed":
        assert big.result == 4 * 2**20
    else:
        assert big.state == "failed"
        assert "died" in big.exception[1]
