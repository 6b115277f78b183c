"""Testing code that uses offload, with unittest and TestAssistant."""

import unittest

from offload.api import CANCELLED, COMPLETED, TraitsExecutor, submit_call, submit_iteration
from offload.testing import TestAssistant


def fibonacci(count: int):
    a, b = 0, 1
    for _ in range(count):
        yield a
        a, b = b, a + b


class TestFibonacci(TestAssistant, unittest.TestCase):
    def setUp(self) -> None:
        TestAssistant.setUp(self)  # makes self._event_loop
        self.executor = TraitsExecutor(event_loop=self._event_loop)

    def tearDown(self) -> None:
        # Shut the executor down first, then release the event loop.
        self.executor.shutdown(timeout=10)
        TestAssistant.tearDown(self)

    def test_all_items_arrive_in_order(self) -> None:
        future = submit_iteration(self.executor, fibonacci, 10)
        items = []
        future.observe(lambda event: items.append(event.new), "result_event")

        self.run_until(future, "done", lambda future: future.done)

        self.assertEqual(future.state, COMPLETED)
        self.assertEqual(items, [0, 1, 1, 2, 3, 5, 8, 13, 21, 34])

    def test_cancel_before_start(self) -> None:
        future = submit_call(self.executor, pow, 2, 10)
        self.assertTrue(future.cancel())

        self.run_until(future, "done", lambda future: future.done)

        self.assertEqual(future.state, CANCELLED)
