"""The six public states of a future, and the finer internal ones.

Public states are plain strings.  Internally a future also remembers whether
cancellation was asked before or after its task started, which tells a legal
``started`` message from an illegal one; ``TRANSITIONS`` is the one table of
every legal (internal state, event) pair, walked in full by the tests.
"""

from __future__ import annotations

from traits.api import Enum

from offload._routing.protocol import (
    ABANDONED,
    CRASHED,
    RAISED,
    RETURNED,
    STARTED,
    TIMED_OUT,
)

WAITING = "waiting"
EXECUTING = "executing"
COMPLETED = "completed"
FAILED = "failed"
CANCELLING = "cancelling"
CANCELLED = "cancelled"

#: Trait type for a future's state.
FutureState = Enum(WAITING, EXECUTING, COMPLETED, FAILED, CANCELLING, CANCELLED)

DONE_STATES = frozenset({COMPLETED, FAILED, CANCELLED})
CANCELLABLE_STATES = frozenset({WAITING, EXECUTING})

# Internal states.  Those equal to a public name mean just that.
CANCELLING_BEFORE_START = "cancelling (not started)"
CANCELLING_AFTER_START = "cancelling (started)"
#: Past its time limit (the timer's TIMED_OUT came): the task is being
#: ended, and whatever it does, the future ends FAILED with the
#: TaskTimedOut.  Public state EXECUTING until then: the task may still
#: run (threads cannot be killed; a worker process takes a moment to die),
#: and CANCELLING would promise CANCELLED.  "not started": the timer fired
#: before the task's STARTED was delivered (it arms as a worker takes the
#: task).
TIMING_OUT_BEFORE_START = "timing out (not started)"
TIMING_OUT = "timing out"

#: Internal state -> public state.
PUBLIC_STATE = {
    WAITING: WAITING,
    EXECUTING: EXECUTING,
    COMPLETED: COMPLETED,
    FAILED: FAILED,
    CANCELLING_BEFORE_START: CANCELLING,
    CANCELLING_AFTER_START: CANCELLING,
    CANCELLED: CANCELLED,
    TIMING_OUT_BEFORE_START: EXECUTING,
    TIMING_OUT: EXECUTING,
}

#: Event for a user's ``cancel()`` (control kinds are ints; this is not).
CANCEL = "cancel()"
#: Event for a user message (any ``str`` kind).
SENT = "sent"

#: (internal state, event) -> new internal state.  Pairs not listed are
#: protocol errors, except that ``cancel()`` outside a cancellable state is
#: simply refused.  A CRASHED task that never started goes through
#: EXECUTING on its way to FAILED, so that observers only ever see the
#: public transitions of the SPEC.
TRANSITIONS = {
    (WAITING, STARTED): EXECUTING,
    (WAITING, CANCEL): CANCELLING_BEFORE_START,
    (EXECUTING, SENT): EXECUTING,
    (EXECUTING, RETURNED): COMPLETED,
    (EXECUTING, RAISED): FAILED,
    (EXECUTING, CRASHED): FAILED,
    (EXECUTING, CANCEL): CANCELLING_AFTER_START,
    (CANCELLING_BEFORE_START, STARTED): CANCELLING_AFTER_START,
    (CANCELLING_BEFORE_START, ABANDONED): CANCELLED,
    (CANCELLING_BEFORE_START, CRASHED): CANCELLED,
    (CANCELLING_AFTER_START, SENT): CANCELLING_AFTER_START,
    (CANCELLING_AFTER_START, RETURNED): CANCELLED,
    (CANCELLING_AFTER_START, RAISED): CANCELLED,
    (CANCELLING_AFTER_START, CRASHED): CANCELLED,
    # Time limits.  A cancel() before or after the limit wins: the task
    # was cancelled first, or the user cancels what is timing out.
    (WAITING, TIMED_OUT): TIMING_OUT_BEFORE_START,
    (EXECUTING, TIMED_OUT): TIMING_OUT,
    (CANCELLING_BEFORE_START, TIMED_OUT): CANCELLING_BEFORE_START,
    (CANCELLING_AFTER_START, TIMED_OUT): CANCELLING_AFTER_START,
    (TIMING_OUT_BEFORE_START, STARTED): TIMING_OUT,
    # The limit's cancel flag reached the runner before the task ran.
    (TIMING_OUT_BEFORE_START, ABANDONED): FAILED,
    (TIMING_OUT_BEFORE_START, CRASHED): FAILED,
    (TIMING_OUT_BEFORE_START, CANCEL): CANCELLING_BEFORE_START,
    (TIMING_OUT, SENT): TIMING_OUT,
    (TIMING_OUT, RETURNED): FAILED,
    (TIMING_OUT, RAISED): FAILED,
    (TIMING_OUT, CRASHED): FAILED,
    (TIMING_OUT, CANCEL): CANCELLING_AFTER_START,
}
