"""``executor.futures`` and ``executor.counts``: right, read-only, once per batch."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
from traits.api import TraitError

import task_functions as tf
from conftest import wait_file
from offload._routing.interface import IMessageRouter
from offload.api import (
    CANCELLED,
    COMPLETED,
    EXECUTING,
    FAILED,
    MultithreadingContext,
    TraitsExecutor,
    submit_call,
)

STATES = ("waiting", "executing", "cancelling", "completed", "failed", "cancelled")


def zero(**given):
    counts = dict.fromkeys(STATES, 0)
    counts.update(given)
    return counts


def test_counts_and_futures_follow_the_tasks(executor, assistant, tmp_path):
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    assert executor.counts == zero()
    assert executor.futures == []

    failing = submit_call(executor, tf.fail)
    assert executor.futures == [failing]
    assert executor.counts == zero(waiting=1)
    assistant.run_until(failing, "done", lambda f: f.done, timeout=20)
    assert executor.counts == zero(failed=1)

    blocked = submit_call(executor, tf.mark_then_wait, started, release)
    wait_file(assistant, started)
    assistant.run_until(blocked, "state", lambda f: f.state == EXECUTING, timeout=20)
    assert executor.futures == [blocked]
    assert executor.counts == zero(executing=1, failed=1)

    cancelled = submit_call(executor, tf.square, 3)
    cancelled.cancel()
    assert executor.counts == zero(executing=1, failed=1, cancelling=1)
    assistant.run_until(cancelled, "done", lambda f: f.done, timeout=20)
    open(release, "w").close()
    assistant.run_until(blocked, "done", lambda f: f.done, timeout=20)
    assert executor.futures == []
    assert executor.counts == zero(completed=1, failed=1, cancelled=1)
    assert (blocked.state, failing.state, cancelled.state) == (COMPLETED, FAILED, CANCELLED)


@pytest.mark.parametrize("matrix", [("thread", "asyncio")], indirect=True)
def test_observers_are_notified_once_per_batch(executor, assistant):
    counts_seen = []
    futures_seen = []
    executor.observe(lambda event: counts_seen.append(event.new), "counts")
    executor.observe(lambda event: futures_seen.append(len(event.new)), "futures")

    n = 1000
    # Submitted while the loop does not run: their messages (2,000) wait,
    # and are delivered in a few batches.
    futures = [submit_call(executor, tf.square, i) for i in range(n)]
    assistant.run_until(
        executor, "counts", lambda e: e.counts["completed"] == n, timeout=30
    )
    assert all(f.state == COMPLETED for f in futures)
    # One notification per batch: far fewer than messages or tasks.
    assert 1 <= len(counts_seen) < 100, len(counts_seen)
    assert len(futures_seen) == len(counts_seen)
    assert counts_seen[-1] == zero(completed=n)
    assert futures_seen[-1] == 0
    # Each notification carries a consistent snapshot.
    for counts in counts_seen:
        assert sum(counts.values()) == n


@pytest.mark.parametrize("matrix", [("thread", "asyncio")], indirect=True)
def test_submissions_alone_are_published(executor, assistant, tmp_path):
    seen = []
    executor.observe(lambda event: seen.append(sum(event.new.values())), "counts")
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    blocker = submit_call(executor, tf.mark_then_wait, started, release)
    wait_file(assistant, started)
    assistant.run_until(blocker, "state", lambda f: f.state == EXECUTING, timeout=20)
    seen.clear()
    # A burst of submissions: observers hear of all of them at once.
    for _ in range(50):
        submit_call(executor, tf.square, 2)
    assistant.run_until(executor, "counts", lambda e: bool(seen), timeout=20)
    assert seen[0] == 51
    open(release, "w").close()


@pytest.mark.parametrize("matrix", [("thread", "asyncio")], indirect=True)
def test_futures_and_counts_are_read_only(executor):
    with pytest.raises(TraitError):
        executor.futures = []
    with pytest.raises(TraitError):
        executor.counts = {}


@pytest.mark.parametrize("matrix", [("thread", "asyncio")], indirect=True)
def test_done_futures_are_not_kept(executor, assistant):
    future = submit_call(executor, tf.square, 5)
    assistant.run_until(future, "done", lambda f: f.done, timeout=20)
    # The batch that ended it has been published (the loop turned).
    assistant.exercise_event_loop()
    ref = weakref.ref(future)
    del future
    gc.collect()
    assert ref() is None
    assert executor.counts == zero(completed=1)


@pytest.mark.parametrize("matrix", [("thread", "asyncio")], indirect=True)
def test_futures_submitted_from_other_threads_are_counted(executor, assistant, tmp_path):
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    made = []
    thread = threading.Thread(
        target=lambda: made.append(
            submit_call(executor, tf.mark_then_wait, started, release)
        )
    )
    thread.start()
    thread.join(timeout=20)
    assert len(made) == 1
    # Counted before the main thread has taken it into its own table.
    assert executor.futures == made
    assert sum(executor.counts.values()) == 1
    wait_file(assistant, started)
    open(release, "w").close()
    assistant.run_until(
        executor, "counts", lambda e: e.counts["completed"] == 1, timeout=20
    )
    assert executor.futures == []


class _PlainRouter(IMessageRouter):
    """A router with IMessageRouter's methods only: it never says when a
    batch of messages ends (as a third-party context's router may not)."""

    def __init__(self, inner):
        self.inner = inner

    @property
    def sender(self):
        return self.inner.sender

    def connect(self, on_finished):
        self.inner.connect(on_finished)

    def disconnect(self):
        self.inner.disconnect()

    def add_receiver(self, task_id, receiver):
        self.inner.add_receiver(task_id, receiver)

    def discard_receiver(self, task_id):
        self.inner.discard_receiver(task_id)

    def inject(self, task_id, message):
        self.inner.inject(task_id, message)

    @property
    def outstanding(self):
        return self.inner.outstanding

    def release_when_idle(self, release):
        self.inner.release_when_idle(release)

    def deliver_blocking(self, timeout):
        self.inner.deliver_blocking(timeout)


class _PlainRouterContext(MultithreadingContext):
    def message_router(self, event_loop):
        return _PlainRouter(super().message_router(event_loop))


def test_a_router_without_batches_still_publishes_every_end(offload_assistant):
    assistant = offload_assistant
    context = _PlainRouterContext()
    executor = TraitsExecutor(context=context, event_loop=assistant.event_loop)
    try:
        published = []
        executor.observe(lambda event: published.append(event.new), "counts")
        futures = [submit_call(executor, tf.square, n) for n in range(20)]
        for future in futures:
            assistant.run_until(future, "done", lambda f: f.done, timeout=20)
        assistant.run_until(
            executor, "counts", lambda e: bool(published) and published[-1] == zero(completed=20),
            timeout=20,
        )
        assert executor.futures == []
        assert executor.counts == zero(completed=20)
    finally:
        executor.shutdown(timeout=20)
        context.close()
