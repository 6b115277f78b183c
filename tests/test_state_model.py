"""Model-based test of the future and executor state machines (SPEC 3 and 4).

A hypothesis ``RuleBasedStateMachine`` submits scripted tasks
(:mod:`reliability_tasks`), cancels them, makes them send messages, return
or raise, and stops and shuts down the executor, in random orders, on a
real context and event loop.  A small model of the SPEC predicts, after
each step, what every future and the executor must show once the event
loop has delivered what is under way:

* the pool runs tasks first in, first out on ``WORKERS`` workers, so the
  model knows which tasks are running and which wait: a task gets a worker
  unless ``WORKERS`` earlier tasks hold theirs for good (running, not told
  to end, not ending on cancellation);
* every future's state is the one the model predicts; the only public
  transitions ever seen are the SPEC's; ``done`` and ``cancellable`` agree
  with ``state`` at every notification;
* every message a task sent before it was cancelled is delivered, in order,
  before the future's final state, and none after it was cancelled;
* ``cancel()`` returns True exactly in WAITING and EXECUTING; a task
  cancelled before it started never runs its callable;
* ``cancel(force=True)`` and time limits end tasks as the model says
  (killed on processes, cooperatively elsewhere);
* ``pause()`` and ``resume()`` return True exactly when they apply, and
  ``paused`` follows them (threads and processes): a paused task sends
  nothing more until resumed, then everything it was told to, in order; a
  cancel wakes it (and clears ``paused``);
* ``submit`` and ``stop`` outside RUNNING raise ``RuntimeError``;
  ``shutdown(timeout)`` raises on time, naming the tasks still running,
  while a task ignores cancellation, and otherwise ends STOPPED.

The default run keeps examples few (CI); ``pytest -m stress`` runs the
``stress`` profile.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyFailure
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)
from traits.api import HasStrictTraits, Int

from conftest import CONTEXTS, EVENT_LOOPS, load
from offload._futures.states import CANCELLING_AFTER_START, TIMING_OUT
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
    TraitsExecutor,
)
from offload.testing.pytest_plugin import OffloadAssistant
from reliability_tasks import ScriptedSpec, started_marker, write_command

#: Workers of the pool under test: few, so that tasks also queue.
WORKERS = 2

#: Seconds a settle step may take before the test fails.
SETTLE_TIMEOUT = 10.0

#: One draw of stop (or shutdown) in this many acts.
STOP_ODDS = 10

#: Time limit (s) of the tasks submitted with one: short, so that a task
#: times out as soon as it starts, before the next step can tell it more.
TIMEOUT = 0.05

LEGAL_FUTURE_TRANSITIONS = {
    (WAITING, EXECUTING),
    (WAITING, CANCELLING),
    (EXECUTING, COMPLETED),
    (EXECUTING, FAILED),
    (EXECUTING, CANCELLING),
    (CANCELLING, CANCELLED),
}
LEGAL_EXECUTOR_TRANSITIONS = {(RUNNING, STOPPING), (STOPPING, STOPPED)}
DONE = {COMPLETED, FAILED, CANCELLED}

#: (examples, steps per example) of the profiles, per context.
PROFILES = {
    "ci": {"thread": (100, 30), "process": (40, 30), "dask": (15, 30)},
    "stress": {"thread": (400, 50), "process": (150, 50), "dask": (60, 40)},
}

#: Hypothesis phases per profile.
PHASES = {
    "ci": [Phase.explicit, Phase.reuse, Phase.generate],
    "stress": list(Phase),
}

_numbers = itertools.count()


class Ticker(HasStrictTraits):
    """Ticks at every change the test watches, so settling wakes at once."""

    ticks = Int()


class TaskModel:
    """What the test did to one task, and the future it got."""

    def __init__(
        self, number: int, honours: bool, future: Any, ticker: Ticker,
        timed: bool = False, kills: bool = False,
    ) -> None:
        self.number = number
        self.honours = honours
        self.future = future
        #: Submitted with ``options(timeout=TIMEOUT)``.
        self.timed = timed
        #: The context kills a worker to force a task's end (processes).
        self.kills = kills
        #: Force-cancelled while in a worker, on a context that kills.
        self.killed = False
        self.commands = 0
        #: Messages the task was told to send.
        self.sent = 0
        #: Paused (``pause()`` returned True, no ``resume()``, cancel or end
        #: since): the task stops before its next message.
        self.paused = False
        #: Messages it was told to send while paused: held back (the task
        #: waits before the first) until it is resumed.
        self.held = 0
        #: "return" or "raise", once told.
        self.final: str | None = None
        #: The public state in which cancel() succeeded, if it did.
        self.cancelled_in: str | None = None
        #: ``sent`` when cancel() succeeded.
        self.sent_at_cancel = 0
        self.transitions: list[tuple[str, str]] = []
        self.violations: list[str] = []
        #: Internal states the future went through (to tell a task that had
        #: started in its worker, unknown to the future, when it was cancelled).
        self.internal_states: list[str] = [future._internal_state]
        self._ticker = ticker
        future.observe(self._on_change, "state,done,cancellable")
        future.observe(self._on_tick, "log.items")
        future.observe(self._on_internal, "_internal_state")

    def _on_change(self, event: Any) -> None:
        future = self.future
        if event.name == "state":
            self.transitions.append((event.old, event.new))
            future.log.append(("state", event.new))
        if future.done != (future.state in DONE):
            self.violations.append(f"done={future.done} in state {future.state}")
        if future.cancellable != (future.state in (WAITING, EXECUTING)):
            self.violations.append(f"cancellable={future.cancellable} in {future.state}")
        self._ticker.ticks += 1

    def _on_tick(self, event: Any) -> None:
        self._ticker.ticks += 1

    def _on_internal(self, event: Any) -> None:
        self.internal_states.append(event.new)
        self._ticker.ticks += 1

    @property
    def started_unseen(self) -> bool:
        """Cancelled while WAITING, but its task had already started in the
        worker (its "started" message was on its way): a race no executor
        can close without a round trip per start.  The task then runs, and
        the future ends like one cancelled while EXECUTING."""
        return self.cancelled_in == WAITING and CANCELLING_AFTER_START in self.internal_states

    @property
    def started_before_cancel(self) -> bool:
        return self.cancelled_in == EXECUTING

    def ends_by_itself(self, working: bool = True) -> bool:
        """Once it has a worker (``working``), the task ends without
        another command."""
        if self.final is not None or self.killed:
            return True
        if self.cancelled_in == WAITING and not self.started_unseen:
            return True  # abandoned when a worker takes it
        if self.timed and working:
            # Its limit sets its cancel flag, and kills it where it can.
            return self.honours or self.kills
        return self.cancelled_in is not None and self.honours

    def takes_commands(self) -> bool:
        """The task still reads commands: not ended, nor ending, nor
        waiting at a pause point.  A timed task takes them only once timing
        out (it must not end first)."""
        if self.final is not None or self.killed or (self.cancelled_in and self.honours):
            return False
        if self.held:
            return False
        return not self.timed or self.future._internal_state == TIMING_OUT

    def delivered_so_far(self) -> int:
        """What was sent and not held back: what a cancel now keeps."""
        return self.sent - self.held

    def cancelled_now(self, state: str) -> None:
        """cancel() (or stop, or shutdown) succeeded in ``state``."""
        self.cancelled_in = state
        self.sent_at_cancel = self.delivered_so_far()
        self.paused = False

    def messages(self) -> list[int]:
        return [arg for kind, arg in self.future.log if kind == "message"]


def make_machine(
    executor_factory: Any,
    assistant: OffloadAssistant,
    directory: str,
    settle_timeout: float = SETTLE_TIMEOUT,
    kills: bool = False,
    pausable: bool = False,
) -> type:
    """The state machine class, bound to one context, loop and directory."""

    class FutureAndExecutorMachine(RuleBasedStateMachine):
        tasks = Bundle("tasks")

        def __init__(self) -> None:
            super().__init__()
            self.ticker = Ticker()
            self.executor = executor_factory()
            self.executor_transitions: list[tuple[str, str]] = []
            self.executor.observe(self._on_executor, "state")
            self.models: list[TaskModel] = []
            self.stopped_by_test = False

        def _on_executor(self, event: Any) -> None:
            self.executor_transitions.append((event.old, event.new))
            self.ticker.ticks += 1

        # The model -----------------------------------------------------------

        def has_worker(self) -> set[int]:
            """Numbers of the tasks that have, or will get, a worker."""
            holding = 0
            result = set()
            for model in self.models:
                if holding >= WORKERS:
                    break
                result.add(model.number)
                if not model.ends_by_itself():
                    holding += 1
            return result

        def expected_states(self, model: TaskModel, with_worker: set[int]) -> frozenset:
            """The states the future may show once settled (one, or two)."""
            if model.cancelled_in == WAITING and not model.started_unseen:
                if model.number in with_worker:
                    return frozenset({CANCELLED})
                # Withdrawn from the pool's queue at once (CANCELLED), or
                # abandoned later, when a worker takes it: both are legal.
                return frozenset({CANCELLING, CANCELLED})
            if model.number not in with_worker:
                return frozenset({WAITING})
            if model.cancelled_in is not None:
                return frozenset({CANCELLED if model.ends_by_itself() else CANCELLING})
            if model.timed:
                # Timed out as it started: FAILED once it ends, whatever it did.
                return frozenset({FAILED if model.ends_by_itself() else EXECUTING})
            if model.final == "return":
                return frozenset({COMPLETED})
            if model.final == "raise":
                return frozenset({FAILED})
            return frozenset({EXECUTING})

        def expected_messages(self, model: TaskModel, with_worker: set[int]) -> int:
            if model.number not in with_worker or model.cancelled_in == WAITING:
                return 0
            if model.timed:
                return 0  # nothing is delivered once it times out
            if model.cancelled_in is not None:
                return model.sent_at_cancel
            return model.delivered_so_far()

        def stuck(self) -> list[TaskModel]:
            """Tasks that cannot end until told to: they hold shutdown up."""
            with_worker = self.has_worker()
            return [m for m in self.models if not self.expected_states(m, with_worker) & DONE]

        def settled(self) -> bool:
            with_worker = self.has_worker()
            for model in self.models:
                if model.future.state not in self.expected_states(model, with_worker):
                    return False
                if len(model.messages()) != self.expected_messages(model, with_worker):
                    return False
                if model.future.paused != (model.paused and not model.future.done):
                    return False
                if (
                    model.timed and model.number in with_worker
                    and model.cancelled_in is None and not model.future.done
                    and model.future._internal_state is not TIMING_OUT
                ):
                    return False  # its limit has not fired yet
            if not self.stopped_by_test:
                return self.executor.state == RUNNING
            if self.stuck():
                return self.executor.state == STOPPING
            # STOPPED exactly once every future is done.
            all_done = all(m.future.done for m in self.models)
            return self.executor.state == (STOPPED if all_done else STOPPING)

        def settle(self) -> None:
            """Run the event loop until the model's predictions hold."""
            try:
                assistant.run_until(
                    self.ticker, "ticks", lambda _: self.settled(), timeout=settle_timeout
                )
            except RuntimeError:
                with_worker = self.has_worker()
                report = [
                    f"task {m.number} (honours={m.honours}, final={m.final}, "
                    f"cancelled in {m.cancelled_in}, sent {m.sent}): state "
                    f"{m.future.state}, expected {sorted(self.expected_states(m, with_worker))}; "
                    f"{len(m.messages())} messages, expected "
                    f"{self.expected_messages(m, with_worker)}"
                    for m in self.models
                ]
                raise AssertionError(
                    f"did not settle in {settle_timeout} s; executor "
                    f"{self.executor.state}, stopped by the test: {self.stopped_by_test}:\n"
                    + "\n".join(report)
                ) from None

        def command(self, model: TaskModel, text: str) -> None:
            write_command(directory, model.number, model.commands, text)
            model.commands += 1

        # Rules ---------------------------------------------------------------

        @precondition(lambda self: self.executor.state == RUNNING and len(self.models) < 8)
        @rule(target=tasks, honours=st.booleans())
        def submit(self, honours: bool) -> TaskModel:
            number = next(_numbers)
            future = self.executor.submit(ScriptedSpec(directory, number, honours))
            assert future.state == WAITING and future.cancellable and not future.done
            model = TaskModel(number, honours, future, self.ticker)
            self.models.append(model)
            self.settle()
            return model

        @precondition(lambda self: self.executor.state == RUNNING and len(self.models) < 8)
        @rule(target=tasks, honours=st.booleans())
        def submit_timed(self, honours: bool) -> TaskModel:
            number = next(_numbers)
            options = self.executor.options(timeout=TIMEOUT)
            future = options.submit(ScriptedSpec(directory, number, honours))
            assert future.state == WAITING
            model = TaskModel(number, honours, future, self.ticker, timed=True, kills=kills)
            self.models.append(model)
            self.settle()
            return model

        @precondition(lambda self: self.executor.state != RUNNING)
        @rule(honours=st.booleans())
        def submit_when_not_running(self, honours: bool) -> None:
            with pytest.raises(RuntimeError, match="cannot submit"):
                self.executor.submit(ScriptedSpec(directory, next(_numbers), honours))

        @rule(model=tasks)
        def cancel(self, model: TaskModel) -> None:
            before = model.future.state
            returned = model.future.cancel()
            assert returned == (before in (WAITING, EXECUTING)), (before, returned)
            if returned:
                assert model.future.state == CANCELLING
                assert not model.future.paused
                model.cancelled_now(before)
            else:
                assert model.future.state == before
            self.settle()

        @rule(model=tasks)
        def force_cancel(self, model: TaskModel) -> None:
            # Only where the model knows that the task is in a worker: a
            # force while WAITING may or may not catch a task that a worker
            # has just taken.
            internal = model.future._internal_state
            if internal not in (EXECUTING, CANCELLING_AFTER_START, TIMING_OUT):
                return
            before = model.future.state
            returned = model.future.cancel(force=True)
            assert returned == (before == EXECUTING), (before, returned)
            assert model.future.state == CANCELLING
            if returned:
                model.cancelled_now(before)
            model.killed = kills
            self.settle()

        @rule(model=tasks, count=st.integers(1, 20))
        def send(self, model: TaskModel, count: int) -> None:
            if not model.takes_commands():
                return  # the task has ended, or will, without reading more
            self.command(model, f"send {count}")
            model.sent += count
            if model.paused:
                model.held += count
            self.settle()

        @rule(model=consumes(tasks), how=st.sampled_from(["return", "raise"]))
        def end(self, model: TaskModel, how: str) -> None:
            if not model.takes_commands():
                return
            self.command(model, how)
            model.final = how
            self.settle()

        @precondition(lambda self: pausable)
        @rule(model=tasks)
        def pause(self, model: TaskModel) -> None:
            if model.timed:
                return  # it times out as it starts: nothing to pause
            before = model.future.state
            returned = model.future.pause()
            expected = before in (WAITING, EXECUTING) and not model.paused
            assert returned == expected, (before, model.paused, returned)
            if returned:
                assert model.future.paused
                model.paused = True
                # What it was sent and has not delivered yet is held back
                # too: a task still waiting for a worker reads those
                # commands after this pause, so it pauses before each.
                model.held = model.sent - len(model.messages())
            self.settle()

        @precondition(lambda self: pausable)
        @rule(model=tasks)
        def resume(self, model: TaskModel) -> None:
            returned = model.future.resume()
            assert returned == (model.paused and not model.future.done), (
                model.paused, model.future.state, returned)
            if returned:
                assert not model.future.paused
                model.paused = False
                # The held messages go now; the task reads commands again.
                model.held = 0
            self.settle()

        # stop and shutdown end an example's interesting part: draw them
        # rarely (one draw in STOP_ODDS acts), so that tasks pile up first.

        @rule(dice=st.integers(1, STOP_ODDS))
        def stop(self, dice: int) -> None:
            if dice != 1:
                return
            if self.executor.state != RUNNING:
                with pytest.raises(RuntimeError, match="stop"):
                    self.executor.stop()
                return
            states = {m.number: m.future.state for m in self.models}
            self.executor.stop()
            self.stopped_by_test = True
            for model in self.models:
                if states[model.number] in (WAITING, EXECUTING):
                    assert model.future.state == CANCELLING
                    model.cancelled_now(states[model.number])
            self.settle()

        @rule(dice=st.integers(1, STOP_ODDS))
        def shutdown(self, dice: int) -> None:
            if dice != 1:
                return
            if self.executor.state == RUNNING:
                for model in self.models:
                    if model.future.state in (WAITING, EXECUTING):
                        model.cancelled_now(model.future.state)
                self.stopped_by_test = True
            stuck = self.stuck()
            timeout = 0.3
            start = time.monotonic()
            if stuck:
                with pytest.raises(RuntimeError, match=r"(\d+) tasks still running") as info:
                    self.executor.shutdown(timeout=timeout)
                assert self.executor.state == STOPPING
                running = sum(1 for m in self.models if not m.future.done)
                assert f" {running} tasks still running" in str(info.value), (
                    running, str(info.value))
                assert running >= len(stuck)
            else:
                self.executor.shutdown(timeout=SETTLE_TIMEOUT)
                assert self.executor.state == STOPPED
            elapsed = time.monotonic() - start
            if stuck:
                assert timeout <= elapsed < timeout + 5, elapsed
            self.settle()

        # Invariants ----------------------------------------------------------

        @invariant()
        def transitions_are_legal(self) -> None:
            for model in self.models:
                assert not model.violations, model.violations
                for pair in model.transitions:
                    assert pair in LEGAL_FUTURE_TRANSITIONS, (model.number, pair)
            for pair in self.executor_transitions:
                assert pair in LEGAL_EXECUTOR_TRANSITIONS, pair
            assert self.executor.running == (self.executor.state == RUNNING)
            assert self.executor.stopped == (self.executor.state == STOPPED)

        @invariant()
        def messages_complete_in_order_and_before_the_end(self) -> None:
            for model in self.models:
                log = model.future.log
                messages = model.messages()
                assert messages == list(range(len(messages))), (model.number, messages)
                states = [arg for kind, arg in log if kind == "state"]
                if CANCELLING in states:
                    # Nothing is delivered once the future is CANCELLING.
                    after = log[log.index(("state", CANCELLING)):]
                    assert all(kind == "state" for kind, _ in after), (model.number, log)
                if model.future.done:
                    assert log[-1] == ("state", model.future.state), (model.number, log)

        @invariant()
        def outcomes_match(self) -> None:
            for model in self.models:
                future = model.future
                if future.state == COMPLETED:
                    assert future.result == ("returned", model.number, model.sent)
                elif future.state == FAILED and model.timed:
                    assert future.exception[0] == "offload.api.TaskTimedOut"
                    assert f"{TIMEOUT:g} seconds" in future.exception[1]
                elif future.state == FAILED:
                    assert future.exception[0] == "ValueError"
                    assert f"task {model.number} raised" in future.exception[1]
                if future.state != COMPLETED:
                    with pytest.raises(AttributeError):
                        future.result
                if future.state != FAILED:
                    with pytest.raises(AttributeError):
                        future.exception
                if model.cancelled_in == WAITING and future.done:
                    # Cancelled before it started: the callable never ran,
                    # unless it had started unseen, and then its future
                    # heard of the start.
                    ran = os.path.exists(started_marker(directory, model.number))
                    assert ran == model.started_unseen, (model.number, model.internal_states)

        def teardown(self) -> None:
            # Let every task end, then shut down; nothing may stay running.
            for model in self.models:
                if model.final is None and not (model.cancelled_in and model.honours):
                    # A timed task that has not started may now end before
                    # its limit: only its being done is checked from here.
                    self.command(model, "return")
                    model.final = "return"
            self.executor.shutdown(timeout=SETTLE_TIMEOUT)
            assert self.executor.state == STOPPED
            for model in self.models:
                assert model.future.done, (model.number, model.future.state)

    return FutureAndExecutorMachine


#: (context, event loop) pairs: every context on asyncio; threads on Qt.
PAIRS = [
    pytest.param("thread", "asyncio", id="thread-asyncio"),
    pytest.param("process", "asyncio", id="process-asyncio", marks=pytest.mark.process),
    pytest.param("dask", "asyncio", id="dask-asyncio", marks=pytest.mark.dask),
    pytest.param("thread", "qt", id="thread-qt", marks=pytest.mark.gui),
]


def make_context(kind: str) -> Any:
    cls = load(CONTEXTS, kind)
    if kind == "dask":
        # One worker process with WORKERS threads: Dask then runs tasks in
        # the order they were submitted, as the model assumes.
        return cls(n_workers=1, threads_per_worker=WORKERS)
    return cls()


def run_machine(context_kind: str, loop_kind: str, profile: str, tmp_path: Any) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    examples, steps = PROFILES[profile][context_kind]
    if loop_kind == "qt":
        examples = max(3, examples // 3)
    event_loop = load(EVENT_LOOPS, loop_kind)()
    assistant = OffloadAssistant(event_loop)
    context = make_context(context_kind)
    # Threads: each executor makes and releases its own pool.  Processes and
    # Dask: one pool for the whole test, so examples need not start workers.
    pool = None if context_kind == "thread" else context.worker_pool(max_workers=WORKERS)
    try:
        def executor_factory() -> TraitsExecutor:
            if pool is None:
                return TraitsExecutor(
                    context=context, event_loop=event_loop, max_workers=WORKERS
                )
            return TraitsExecutor(context=context, event_loop=event_loop, worker_pool=pool)

        machine = make_machine(
            executor_factory, assistant, str(tmp_path), kills=context_kind == "process",
            # On Dask a pause reaches the worker a few milliseconds later,
            # so the model could not tell which message it stops before.
            pausable=context_kind != "dask",
        )
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=steps,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                # Shrinking replays a failure many times, each waiting out the
                # settle timeout: in the default run report it unshrunk, in
                # time; the long run shrinks.
                phases=PHASES[profile],
            ),
        )
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
        context.close()
        assistant.dispose()
        close = getattr(event_loop, "close", None)
        if close is not None:
            close()


@pytest.mark.parametrize(("context_kind", "loop_kind"), PAIRS)
def test_state_machines_follow_the_model(context_kind: str, loop_kind: str, tmp_path: Any) -> None:
    run_machine(context_kind, loop_kind, "ci", tmp_path)


@pytest.mark.stress
@pytest.mark.timeout(1800)
@pytest.mark.parametrize(("context_kind", "loop_kind"), PAIRS)
def test_state_machines_follow_the_model_long(
    context_kind: str, loop_kind: str, tmp_path: Any
) -> None:
    run_machine(context_kind, loop_kind, "stress", tmp_path)


@pytest.mark.tooling
def test_the_model_catches_a_wrong_prediction(tmp_path: Any) -> None:
    """The test can fail: with one worker more than the model assumes, a
    task it predicts WAITING runs, and the machine reports it."""
    from hypothesis.stateful import run_state_machine_as_test

    from offload.api import AsyncioEventLoop

    event_loop = AsyncioEventLoop()
    assistant = OffloadAssistant(event_loop)
    context = load(CONTEXTS, "thread")()
    machine = make_machine(
        lambda: TraitsExecutor(context=context, event_loop=event_loop, max_workers=WORKERS + 1),
        assistant,
        str(tmp_path),
        settle_timeout=2.0,
    )
    try:
        # A wrong prediction that a replay does not hit again (timing) is
        # reported as FlakyFailure, holding the AssertionError: both count.
        # Derandomized: the same examples every run, which do reach a third
        # task running at once (random ones once did not, in 100 examples).
        with pytest.raises((AssertionError, FlakyFailure)) as caught:
            run_state_machine_as_test(
                machine,
                settings=settings(
                    max_examples=100, stateful_step_count=25, deadline=None,
                    database=None, suppress_health_check=list(HealthCheck),
                    phases=[Phase.generate], print_blob=False, derandomize=True,
                ),
            )
    finally:
        context.close()
        assistant.dispose()
        event_loop.close()
    if isinstance(caught.value, FlakyFailure):
        assert all(isinstance(e, AssertionError) for e in caught.value.exceptions)
