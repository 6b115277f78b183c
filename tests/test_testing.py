"""offload.testing: the unittest mixin and the pytest fixtures."""

from __future__ import annotations

import asyncio
import io
import unittest

import pytest
from traits.api import HasStrictTraits, Int

import task_functions as tf
from offload.api import COMPLETED, TraitsExecutor, submit_call
from offload.testing import TestAssistant


class Counter(HasStrictTraits):
    value = Int(0)


class _AssistantCase(TestAssistant, unittest.TestCase):
    """Written the way a Traits Futures 0.3.1 user writes tests."""

    def setUp(self):
        TestAssistant.setUp(self)
        self.executor = TraitsExecutor(event_loop=self._event_loop)

    def tearDown(self):
        self.executor.shutdown(timeout=10)
        TestAssistant.tearDown(self)

    def test_run_until_result(self):
        future = submit_call(self.executor, tf.square, 4)
        self.run_until(future, "done", lambda f: f.done)
        self.assertEqual(future.result, 16)
        self.assertEqual(future.state, COMPLETED)

    def test_run_until_times_out(self):
        counter = Counter()
        with self.assertRaises(RuntimeError):
            self.run_until(counter, "value", lambda c: c.value > 0, timeout=0.1)

    def test_exercise_event_loop_runs_pending_callbacks(self):
        counter = Counter()
        self._event_loop_helper.setattr_soon(counter, "value", 5)
        self.exercise_event_loop()
        self.assertEqual(counter.value, 5)


def test_unittest_mixin_passes():
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(_AssistantCase)
    result = unittest.TextTestRunner(verbosity=0, stream=io.StringIO()).run(suite)
    assert result.testsRun == 3
    assert result.wasSuccessful(), result.failures + result.errors


def test_unittest_mixin_reports_a_real_failure():
    class Failing(TestAssistant, unittest.TestCase):
        def test_wrong(self):
            executor = TraitsExecutor(event_loop=self._event_loop)
            future = submit_call(executor, tf.square, 4)
            self.run_until(future, "done", lambda f: f.done)
            executor.shutdown(timeout=10)
            self.assertEqual(future.result, 17)

    result = unittest.TextTestRunner(stream=io.StringIO()).run(
        unittest.defaultTestLoader.loadTestsFromTestCase(Failing)
    )
    assert len(result.failures) == 1


def test_fixtures(traits_executor, offload_assistant):
    future = submit_call(traits_executor, tf.square, 6)
    offload_assistant.run_until(future, "done", lambda f: f.done)
    assert future.result == 36


def test_run_until_condition_already_true_returns_at_once(offload_assistant):
    counter = Counter(value=1)
    offload_assistant.run_until(counter, "value", lambda c: c.value == 1, timeout=0.01)


def test_run_until_timeout_message(offload_assistant):
    with pytest.raises(RuntimeError, match="timed out"):
        offload_assistant.run_until(Counter(), "value", lambda c: c.value == 1, timeout=0.05)


def test_default_asyncio_loop_is_current_for_traits_futures_scripts():
    # Traits Futures 0.3 scripts call asyncio.get_event_loop() after making
    # AsyncioEventLoop(); they must get the same loop.
    from offload.api import AsyncioEventLoop

    loop = AsyncioEventLoop()
    try:
        assert asyncio.get_event_loop_policy().get_event_loop() is loop.event_loop
    finally:
        loop.close()
    assert loop.event_loop.is_closed()


def test_given_asyncio_loop_is_not_closed():
    from offload.api import AsyncioEventLoop

    raw = asyncio.new_event_loop()
    try:
        wrapper = AsyncioEventLoop(event_loop=raw)
        wrapper.close()
        assert not raw.is_closed()
    finally:
        raw.close()
