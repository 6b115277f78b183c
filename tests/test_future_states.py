"""The future state machine, walked over every (internal state, event) pair."""

from __future__ import annotations

import itertools
import logging

import pytest

from offload._futures.states import (
    CANCEL,
    CANCELLABLE_STATES,
    DONE_STATES,
    PUBLIC_STATE,
    SENT,
    TRANSITIONS,
)
from offload._routing.protocol import (
    ABANDONED,
    CRASHED,
    FINAL_KINDS,
    RAISED,
    RETURNED,
    STARTED,
    TIMED_OUT,
)
from offload.api import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXECUTING,
    FAILED,
    WAITING,
    CallFuture,
)

EVENTS = [STARTED, SENT, RETURNED, RAISED, ABANDONED, CRASHED, CANCEL, TIMED_OUT]

#: The SPEC's public state machine: the only legal public transitions.
LEGAL_PUBLIC = {
    (WAITING, EXECUTING),
    (WAITING, CANCELLING),
    (EXECUTING, COMPLETED),
    (EXECUTING, FAILED),
    (EXECUTING, CANCELLING),
    (CANCELLING, CANCELLED),
}

ERROR = (("ValueError", "bad", "Traceback ..."), ValueError("bad"))
TIMEOUT = (("offload.api.TaskTimedOut", "late", "..."), TimeoutError("late"))


def message_for(event):
    if event == SENT:
        return ("ping", 1)
    if event in (RAISED, CRASHED):
        return (event, ERROR)
    if event == TIMED_OUT:
        return (event, TIMEOUT)
    if event == RETURNED:
        return (event, "result")
    return (event, None)


def future_in(internal_state):
    """A future brought to ``internal_state`` through legal events only."""
    paths = {
        WAITING: [],
        EXECUTING: [STARTED],
        COMPLETED: [STARTED, RETURNED],
        FAILED: [STARTED, RAISED],
        "cancelling (not started)": [CANCEL],
        "cancelling (started)": [STARTED, CANCEL],
        CANCELLED: [CANCEL, ABANDONED],
        "timing out (not started)": [TIMED_OUT],
        "timing out": [STARTED, TIMED_OUT],
    }
    future = PingFuture()
    for event in paths[internal_state]:
        apply(future, event)
    assert future._internal_state == internal_state
    return future


def apply(future, event):
    if event == CANCEL:
        return future.cancel()
    return future.receive(message_for(event))


class PingFuture(CallFuture):
    def _process_ping(self, arg):
        self.pings = getattr(self, "pings", 0) + arg


PingFuture.add_class_trait("pings", int)


@pytest.mark.parametrize(
    "internal_state, event", list(itertools.product(PUBLIC_STATE, EVENTS))
)
def test_every_state_event_pair(internal_state, event, caplog):
    future = future_in(internal_state)
    changes = []
    future.observe(lambda e: changes.append((e.old, e.new)), "state")
    expected = TRANSITIONS.get((internal_state, event))
    if event == CRASHED and internal_state == WAITING:
        expected = FAILED  # through EXECUTING
    with caplog.at_level(logging.ERROR, logger="offload.futures"):
        outcome = apply(future, event)
    if expected is None:
        # Illegal: nothing changes; protocol errors are logged, a refused
        # cancel() just returns False.
        assert future._internal_state == internal_state
        assert changes == []
        if event == CANCEL:
            assert outcome is False
        else:
            assert "not valid" in caplog.text
        return
    assert future._internal_state == expected
    for change in changes:
        assert change in LEGAL_PUBLIC, change
    assert future.done == (future.state in DONE_STATES)
    assert future.cancellable == (future.state in CANCELLABLE_STATES)
    if event == CANCEL:
        assert outcome is True
    else:
        assert outcome == (future.state in DONE_STATES)
        if future.state in DONE_STATES:
            assert event in FINAL_KINDS
    if event == SENT:
        # Delivered while EXECUTING, dropped once cancelling or timing out.
        assert future.pings == (1 if internal_state == EXECUTING else 0)
    if future.state == FAILED and "timing out" in internal_state:
        assert future.exception == TIMEOUT[0]  # whatever ended the task


def test_a_timed_out_future_fails_with_its_timeout_whatever_the_task_does():
    for last in (RETURNED, RAISED, CRASHED):
        future = future_in("timing out")
        assert future.state == EXECUTING
        apply(future, SENT)
        apply(future, last)
        assert future.state == FAILED
        assert future.exception_object is TIMEOUT[1]
        assert getattr(future, "pings", 0) == 0


def test_crash_before_start_passes_through_executing():
    future = future_in(WAITING)
    changes = []
    future.observe(lambda e: changes.append(e.new), "state")
    future.receive((CRASHED, ERROR))
    assert changes == [EXECUTING, FAILED]
    assert future.exception == ERROR[0]
    assert future.exception_object is ERROR[1]


def test_a_crash_before_start_cancelled_by_an_executing_observer_ends_cancelled():
    # Found by the long Dask cancel race: an observer that cancels when the
    # future shows EXECUTING, during a crash delivered while WAITING, made
    # the future go from CANCELLING to FAILED (receive kept its stale state).
    future = future_in(WAITING)
    changes = []

    def on_state(event):
        changes.append((event.old, event.new))
        if event.new == EXECUTING:
            assert future.cancel() is True

    future.observe(on_state, "state")
    assert future.receive((CRASHED, ERROR)) is True
    assert changes == [(WAITING, EXECUTING), (EXECUTING, CANCELLING), (CANCELLING, CANCELLED)]
    assert set(changes) <= LEGAL_PUBLIC


def test_result_discarded_when_cancelled():
    future = future_in("cancelling (started)")
    future.receive((RETURNED, "late"))
    assert future.state == CANCELLED
    with pytest.raises(AttributeError, match="discarded"):
        future.result


def test_cancel_calls_the_cancel_callback_once():
    calls = []
    future = CallFuture(_cancel=lambda: calls.append(1))
    assert future.cancel() is True
    assert future.cancel() is False
    assert calls == [1]


def test_state_changes_are_logged_at_debug(caplog):
    future = future_in(WAITING)
    with caplog.at_level(logging.DEBUG, logger="offload.futures"):
        future.receive((STARTED, None))
    assert "waiting -> executing" in caplog.text
