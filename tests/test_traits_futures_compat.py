"""An application and its tests, written for Traits Futures 0.3.1.

Only the imports changed (``traits_futures`` -> ``offload``); everything
below is how a Traits Futures user writes an app model and its unittest
tests.  pytest collects and runs the unittest case as it is.
"""

import unittest

from traits.api import Bool, HasStrictTraits, Instance, Int, List, observe

from offload.api import (
    CANCELLED,
    COMPLETED,
    EXECUTING,
    CallFuture,
    ProgressFuture,
    TraitsExecutor,
    submit_call,
    submit_progress,
)
from offload.testing.api import TestAssistant


def slow_square(n):
    return n * n


def count_to(target, progress):
    for i in range(target):
        progress((i, target))
    return target


def wait_forever(progress):
    while True:
        progress(None)


class SquaringHelper(HasStrictTraits):
    """The kind of model a TraitsUI app of Traits Futures' era has."""

    traits_executor = Instance(TraitsExecutor)
    input = Int(5)
    current_future = Instance(CallFuture)
    results = List()
    busy = Bool(False)

    def square(self):
        self.current_future = submit_call(self.traits_executor, slow_square, self.input)

    @observe("current_future:done")
    def _record_result(self, event):
        future = event.object
        if future.state == COMPLETED:
            self.results.append(future.result)

    @observe("current_future:state")
    def _update_busy(self, event):
        self.busy = event.new == EXECUTING


class TestSquaringHelper(TestAssistant, unittest.TestCase):
    def setUp(self):
        TestAssistant.setUp(self)
        self.executor = TraitsExecutor(event_loop=self._event_loop)
        self.helper = SquaringHelper(traits_executor=self.executor)

    def tearDown(self):
        self.executor.stop()
        self.run_until(self.executor, "stopped", lambda executor: executor.stopped)
        del self.helper, self.executor
        TestAssistant.tearDown(self)

    def test_square(self):
        self.helper.input = 7
        self.helper.square()
        future = self.helper.current_future
        self.run_until(future, "done", lambda future: future.done)
        self.assertEqual(self.helper.results, [49])
        self.assertFalse(self.helper.busy)

    def test_progress(self):
        future = submit_progress(self.executor, count_to, 10)
        self.assertIsInstance(future, ProgressFuture)
        reports = []
        future.observe(lambda event: reports.append(event.new), "progress")
        self.run_until(future, "done", lambda future: future.done)
        self.assertEqual(reports, [(i, 10) for i in range(10)])
        self.assertEqual(future.result, 10)

    def test_cancel(self):
        future = submit_progress(self.executor, wait_forever)
        self.run_until(future, "state", lambda future: future.state == EXECUTING)
        self.assertTrue(future.cancel())
        self.run_until(future, "done", lambda future: future.done)
        self.assertEqual(future.state, CANCELLED)
