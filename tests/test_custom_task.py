"""Behaviour suite for custom task types (BaseTask / BaseFuture / ITaskSpecification)."""

from __future__ import annotations

from conftest import wait_done
from custom_tasks import FizzBuzzSpec, Unhandled
from offload.api import COMPLETED, IFuture


def test_custom_messages_dispatch_to_process_methods(executor, assistant):
    future = executor.submit(FizzBuzzSpec(15))
    assert isinstance(future, IFuture)
    wait_done(assistant, future)
    assert future.state == COMPLETED
    assert future.fizz == [3, 6, 9, 12]
    assert future.buzz == [5, 10]
    assert future.fizz_buzz == [15]
    assert future.result == 15


def test_message_without_handler_is_reported_and_task_still_ends(executor, assistant, caplog):
    future = executor.submit(Unhandled())
    wait_done(assistant, future)
    # The missing handler is logged, naming the method to write; the task's
    # end still arrives.
    assert future.state == COMPLETED and future.result == "end"
    assert "_process_nobody_listens" in caplog.text
