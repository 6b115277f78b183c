"""Cancellation racing the task: thousands of tasks, cancelled at random moments.

Each task marks a file when its callable starts, reports a random number of
progress values, then returns or raises.  Each future is cancelled at one
moment drawn at random:

``never``
    it must COMPLETE (or FAIL) with every progress value, in order;
``submit``
    straight after submission, usually before the task starts;
``started``
    when the future turns EXECUTING;
``progress``
    on the main thread, while handling its k-th progress value;
``last``
    while handling its last progress value: the task is returning or
    raising at that very moment, and its end is often already queued
    behind that value, so cancel() meets the end at the same instant;
``end``
    while the future's final state is being notified: cancel() meets the
    end on the main thread and must return False;
``timer``
    after a random delay of up to a few milliseconds, whatever the task is
    doing then.

Every future must end in exactly one final state, reached through the SPEC's
transitions only, and that state must agree with what happened: CANCELLED
if and only if ``cancel()`` returned True; no progress value delivered after
a successful ``cancel()``; every value delivered, in order, otherwise; and a
task whose callable never started must have been cancelled.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import pytest

from conftest import CONTEXTS, load
from offload.api import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXECUTING,
    FAILED,
    WAITING,
    AsyncioEventLoop,
    TraitsExecutor,
    submit_progress,
)
from offload.testing.pytest_plugin import OffloadAssistant
from reliability_tasks import spin_then_end

LEGAL = {
    (WAITING, EXECUTING),
    (WAITING, CANCELLING),
    (EXECUTING, COMPLETED),
    (EXECUTING, FAILED),
    (EXECUTING, CANCELLING),
    (CANCELLING, CANCELLED),
}
FINAL = {COMPLETED, FAILED, CANCELLED}
MOMENTS = ["never", "submit", "started", "progress", "last", "end", "timer"]

#: Seconds without any future ending after which a run counts as hung.
#: Progress, not a total: a Dask run of 5,000 races slows down as it goes
#: (1,000 tasks in 12 s, 3,000 in 63-115 s here) and a fixed rate failed
#: busy machines that were still finishing tasks in order.
STALL_LIMIT = 60.0

#: Tasks per run: (default run, stress run), per context.
COUNTS = {"thread": (3000, 50_000), "process": (1500, 20_000), "dask": (300, 5_000)}


class Watch:
    """One task's plan and everything its future did."""

    __slots__ = (
        "number", "spins", "fail", "moment", "k", "marker", "future",
        "states", "values", "cancel_returned", "values_at_cancel", "done_events",
        "__weakref__",
    )

    def __init__(self, number: int, rng: random.Random, directory: str) -> None:
        self.number = number
        self.spins = rng.choice([0, 1, 2, 5, 20, 100])
        self.fail = rng.random() < 0.3
        self.moment = rng.choice(MOMENTS)
        if self.moment in ("progress", "last") and self.spins == 0:
            self.moment = "started"
        self.k = rng.randrange(self.spins) if self.spins else 0
        if self.moment == "last":
            self.k = self.spins - 1
        self.marker = os.path.join(directory, f"ran-{number}")
        self.future: Any = None
        self.states: list[tuple[str, str]] = []
        self.values: list[int] = []
        self.cancel_returned: bool | None = None
        self.values_at_cancel = 0
        self.done_events = 0

    def cancel(self) -> None:
        if self.cancel_returned is None:
            state = self.future.state
            returned = self.future.cancel()
            assert returned == (state in (WAITING, EXECUTING)), (self.number, state)
            self.cancel_returned = returned
            self.values_at_cancel = len(self.values)

    def on_state(self, event: Any) -> None:
        self.states.append((event.old, event.new))
        if event.new == EXECUTING and self.moment == "started":
            self.cancel()
        elif event.new in (COMPLETED, FAILED) and self.moment == "end":
            self.cancel()
            assert self.cancel_returned is False

    def on_done(self, event: Any) -> None:
        if event.new:
            self.done_events += 1

    def on_progress(self, event: Any) -> None:
        self.values.append(event.new)
        if self.moment in ("progress", "last") and event.new == self.k:
            self.cancel()

    def problems(self) -> list[str]:
        future = self.future
        found = []
        finals = [new for _, new in self.states if new in FINAL]
        if len(finals) != 1 or self.done_events != 1:
            found.append(f"final states {finals}, done fired {self.done_events} times")
        found += [f"illegal {pair}" for pair in self.states if pair not in LEGAL]
        if self.cancel_returned:
            if future.state != CANCELLED:
                found.append(f"cancel() returned True but the state is {future.state}")
            if len(self.values) != self.values_at_cancel:
                found.append("progress delivered after a successful cancel()")
        else:
            expected = FAILED if self.fail else COMPLETED
            if future.state != expected:
                found.append(f"not cancelled, state {future.state}, expected {expected}")
            elif expected == COMPLETED and future.result != self.number:
                found.append(f"result {future.result!r}")
            elif expected == FAILED and future.exception[0] != "ValueError":
                found.append(f"exception {future.exception[:2]}")
            if self.values != list(range(self.spins)):
                found.append(f"values {self.values[:10]}... of {self.spins}")
        if not os.path.exists(self.marker) and not self.cancel_returned:
            found.append("the callable never ran, yet the task was not cancelled")
        if self.values and not os.path.exists(self.marker):
            found.append("progress from a callable that never ran")
        if self.values != list(range(len(self.values))):
            found.append("progress out of order")
        return [f"task {self.number} ({self.moment}, k={self.k}, spins="
                f"{self.spins}, fail={self.fail}): {p}" for p in found]


def make_context(kind: str) -> Any:
    cls = load(CONTEXTS, kind)
    return cls(n_workers=2) if kind == "dask" else cls()


def race(context_kind: str, count: int, directory: str, seed: int) -> None:
    rng = random.Random(seed)
    event_loop = AsyncioEventLoop()
    assistant = OffloadAssistant(event_loop)
    context = make_context(context_kind)
    executor = TraitsExecutor(context=context, event_loop=event_loop)
    loop = event_loop.event_loop
    watches = []
    try:
        for number in range(count):
            watch = Watch(number, rng, directory)
            future = submit_progress(
                executor, spin_then_end, number, watch.spins, watch.fail, watch.marker
            )
            watch.future = future
            future.observe(watch.on_state, "state")
            future.observe(watch.on_done, "done")
            future.observe(watch.on_progress, "progress")
            if watch.moment == "submit":
                watch.cancel()
            elif watch.moment == "timer":
                loop.call_later(rng.uniform(0, 0.02), watch.cancel)
            watches.append(watch)
            if number % 50 == 49:
                # Let the loop run now and then, so that cancels meet tasks in
                # every phase, not only queued ones.
                assistant.exercise_event_loop()
        pending = [w.future for w in watches]
        ended = 0
        deadline = time.monotonic() + STALL_LIMIT
        while pending:
            pending = [f for f in pending if not f.done]
            if len(pending) + ended < count:
                ended = count - len(pending)
                deadline = time.monotonic() + STALL_LIMIT
            elif time.monotonic() > deadline:
                stuck = [w.number for w in watches if not w.future.done][:10]
                raise AssertionError(
                    f"seed {seed}: no task ended for {STALL_LIMIT} s; "
                    f"{len(pending)} never ended: {stuck}"
                )
            assistant.exercise_event_loop()
        # Timer cancels still queued fire now, on done futures: they must
        # return False and change nothing.
        for _ in range(3):
            assistant.exercise_event_loop()
        for watch in watches:
            if watch.cancel_returned is None:
                watch.cancel()
                assert watch.cancel_returned is False
    finally:
        executor.shutdown(timeout=30)
        context.close()
        assistant.dispose()
        event_loop.close()
    problems = [p for w in watches for p in w.problems()]
    assert not problems, f"seed {seed}:\n" + "\n".join(problems[:30])
    moments = {m: sum(1 for w in watches if w.moment == m) for m in MOMENTS}
    outcomes = {
        s: sum(1 for w in watches if w.future.state == s) for s in FINAL
    }
    # The race must really have been run in every phase.
    assert outcomes[CANCELLED] and outcomes[COMPLETED] and outcomes[FAILED], outcomes
    assert all(moments.values()), moments
    lost = sum(1 for w in watches if w.moment == "timer" and w.cancel_returned is False)
    print(f"{context_kind}: {count} tasks, seed {seed}: {outcomes}; "
          f"{lost} timer cancels came too late")


CONTEXT_PARAMS = [
    pytest.param("thread", id="thread"),
    pytest.param("process", id="process", marks=pytest.mark.process),
    pytest.param("dask", id="dask", marks=pytest.mark.dask),
]


def _seed() -> int:
    return int(os.environ.get("OFFLOAD_RACE_SEED", random.randrange(2**32)))


@pytest.mark.parametrize("context_kind", CONTEXT_PARAMS)
def test_cancel_races_end_in_one_consistent_final_state(context_kind: str, tmp_path: Any) -> None:
    race(context_kind, COUNTS[context_kind][0], str(tmp_path), _seed())


@pytest.mark.stress
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("context_kind", CONTEXT_PARAMS)
def test_cancel_races_long(context_kind: str, tmp_path: Any) -> None:
    race(context_kind, COUNTS[context_kind][1], str(tmp_path), _seed())
