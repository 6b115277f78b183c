"""Nothing offload holds keeps a delivered item, message or result alive.

Traits Futures' own suite checks that a ``submit_iteration`` task keeps no
reference to an item once it is delivered: a weak reference to a yielded
set is dead by the time the generator is resumed.  An application that
streams large arrays through ``result_event`` or ``progress`` relies on it,
and on a finished, dropped future freeing its result.
"""

from __future__ import annotations

import gc
import weakref

import event_tasks as et
from conftest import wait_done
from offload.api import COMPLETED, submit_call, submit_iteration, submit_progress


def _delivered_then_resumed(context, assistant, future, trait):
    """Take the first delivered value, then let the task go on: return a
    weak reference to that value once the task has moved past it."""
    values = []
    future.observe(lambda event: values.append(event.new), trait)
    assistant.run_until(future, trait, lambda f: bool(values), timeout=20)
    value = values.pop()
    ref = weakref.ref(value)
    del value
    return ref


def _check_not_kept(context, executor, assistant, submit, function, trait):
    test_ready, midpoint = context.event(), context.event()
    future = submit(executor, function, test_ready, midpoint)
    try:
        ref = _delivered_then_resumed(context, assistant, future, trait)
        # The task sets midpoint once it resumes after the first value.
        assert midpoint.wait(20) is True
        assert ref() is None
    finally:
        test_ready.set()
    wait_done(assistant, future)
    assert future.state == COMPLETED


def test_a_delivered_iteration_item_is_not_kept(context, executor, assistant):
    _check_not_kept(context, executor, assistant, submit_iteration, et.ping_pong,
                    "result_event")


def test_a_delivered_progress_message_is_not_kept(context, executor, assistant):
    _check_not_kept(context, executor, assistant, submit_progress, et.progress_ping_pong,
                    "progress")


def test_the_result_of_a_dropped_future_is_freed(context, executor, assistant):
    future = submit_call(executor, et.new_set)
    wait_done(assistant, future)
    ref = weakref.ref(future.result)
    del future
    gc.collect()
    assert ref() is None
