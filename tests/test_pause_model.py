"""Model-based test of pause, resume, send and cancel on one iteration.

A hypothesis ``RuleBasedStateMachine`` pauses, resumes, sends values to
(``None`` among them) and cancels a running generator, letting the event
loop run between acts, in random orders.  The model predicts what each call
returns and what ``paused`` and ``cancellable`` show; at the end the
generator is resumed and told to finish, and must have received every
value sent, in order, or have ended CANCELLED if it was cancelled.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import pause_tasks as pt
from conftest import CONTEXTS, load, wait_done
from offload.api import CANCELLED, COMPLETED, AsyncioEventLoop, TraitsExecutor, submit_iteration
from offload.testing.pytest_plugin import OffloadAssistant

#: The value that ends the generator (never drawn: values are >= 0 or None).
END = -1

#: (examples, steps per example) per context.
PROFILE = {"thread": (60, 25), "process": (20, 20)}


def make_machine(executor: Any, assistant: OffloadAssistant) -> type:
    class PauseMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.future = submit_iteration(executor, pt.gather_values, END)
            self.counts: list[int] = []
            self.future.observe(lambda event: self.counts.append(event.new), "result_event")
            self.paused = False
            self.cancellable = True
            self.sent: list[Any] = []

        @rule()
        def pause(self) -> None:
            expected = self.cancellable and not self.paused
            assert self.future.pause() is expected
            self.paused = self.paused or expected

        @rule()
        def resume(self) -> None:
            assert self.future.resume() is self.paused
            self.paused = False

        @rule(value=st.none() | st.integers(min_value=0, max_value=1000))
        def send(self, value: Any) -> None:
            assert self.future.send(value) is self.cancellable
            if self.cancellable:
                self.sent.append(value)

        @rule()
        def cancel(self) -> None:
            assert self.future.cancel() is self.cancellable
            self.cancellable = False
            self.paused = False

        @rule()
        def let_the_loop_run(self) -> None:
            assistant.exercise_event_loop()

        @invariant()
        def shows_the_model(self) -> None:
            assert self.future.paused is self.paused
            assert self.future.cancellable is self.cancellable
            assert self.counts == sorted(self.counts)

        def teardown(self) -> None:
            future = self.future
            if self.cancellable:
                future.resume()
                future.send(END)
                wait_done(assistant, future)
                assert future.state == COMPLETED
                assert future.result == [v for v in self.sent if v is not None]
            else:
                wait_done(assistant, future)
                assert future.state == CANCELLED
            assert future.paused is False

    return PauseMachine


@pytest.mark.parametrize("context_kind", sorted(PROFILE))
def test_pause_resume_send_cancel_follow_the_model(context_kind: str, caplog: Any) -> None:
    examples, steps = PROFILE[context_kind]
    event_loop = AsyncioEventLoop()
    assistant = OffloadAssistant(event_loop)
    context = load(CONTEXTS, context_kind)()
    executor = TraitsExecutor(context=context, event_loop=event_loop, max_workers=2)
    try:
        with caplog.at_level(logging.WARNING, logger="offload.futures"):
            run_state_machine_as_test(
                make_machine(executor, assistant),
                settings=settings(
                    max_examples=examples, stateful_step_count=steps, deadline=None,
                    database=None, suppress_health_check=list(HealthCheck),
                    print_blob=False,
                ),
            )
        # Every value sent was received: none reported left over.
        assert "were never received" not in caplog.text
    finally:
        executor.shutdown(timeout=20)
        context.close()
        assistant.dispose()
        event_loop.close()
