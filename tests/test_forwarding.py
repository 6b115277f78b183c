"""Warnings and log records of tasks in worker processes (and Dask workers)
reach the application's filters and handlers, on the main thread.

On threads they do already, with nothing forwarded: checked here too.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import forwarding_tasks as ft
from conftest import wait_done
from offload.api import (
    COMPLETED,
    FAILED,
    MultiprocessingContext,
    TraitsExecutor,
    submit_call,
    submit_progress,
)


def make_executor(assistant: Any, **context_options: Any) -> tuple[Any, Any]:
    context = MultiprocessingContext(**context_options)
    executor = TraitsExecutor(context=context, event_loop=assistant.event_loop)
    return context, executor


@pytest.fixture
def executor(offload_assistant: Any) -> Iterator[TraitsExecutor]:
    context, executor = make_executor(offload_assistant)
    yield executor
    executor.shutdown(timeout=20)
    context.close()


@pytest.fixture
def assistant(offload_assistant: Any) -> Any:
    return offload_assistant


class Records(logging.Handler):
    """Keeps the records it handles, and on which thread."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.threads: set[int] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.threads.add(threading.get_ident())


@pytest.fixture
def records() -> Iterator[Records]:
    """A handler on the test logger; the root level at INFO meanwhile."""
    handler = Records()
    target = logging.getLogger(ft.logger.name)
    target.addHandler(handler)
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.INFO)
    yield handler
    root.setLevel(old_level)
    target.removeHandler(handler)


# Warnings ---------------------------------------------------------------------


@pytest.mark.process
def test_a_warning_is_reissued_with_its_place_and_category(executor, assistant):
    future = submit_call(executor, ft.warn, "look out", ft.TaskWarning)
    with pytest.warns(ft.TaskWarning, match="look out") as caught:
        wait_done(assistant, future)
    assert future.state == COMPLETED
    [warning] = caught.list
    assert warning.category is ft.TaskWarning
    assert os.path.samefile(warning.filename, ft.__file__)
    assert warning.lineno == ft.warn_line()


@pytest.mark.process
def test_a_deprecation_warning_hidden_by_the_workers_defaults_comes(executor, assistant):
    # A fresh interpreter ignores DeprecationWarning outside __main__; the
    # application's filters decide, not the worker's.
    future = submit_call(executor, ft.warn, "old API", DeprecationWarning)
    with pytest.warns(DeprecationWarning, match="old API"):
        wait_done(assistant, future)


@pytest.mark.process
def test_an_error_filter_raises_on_the_main_thread_and_delivery_goes_on(
    executor, assistant
):
    # The suite runs with filterwarnings = error: the re-issued warning
    # raises where an observer's exception would, out of the loop's run.
    future = submit_call(executor, ft.warn, "as an error")
    with pytest.raises(UserWarning, match="as an error"):
        wait_done(assistant, future)
    wait_done(assistant, future)
    assert future.state == COMPLETED


@pytest.mark.process
def test_a_repeated_warning_is_sent_once_per_task(executor, assistant):
    futures = [submit_call(executor, ft.warn_many, 1000) for _ in range(2)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for future in futures:
            wait_done(assistant, future)
    assert [str(w.message) for w in caught] == ["again and again"] * 2


@pytest.mark.process
def test_forward_warnings_false_leaves_them_in_the_worker(assistant):
    context, executor = make_executor(assistant, forward_warnings=False)
    try:
        future = submit_call(executor, ft.warn, "stays there")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            wait_done(assistant, future)
        assert future.state == COMPLETED
        assert caught == []
    finally:
        executor.shutdown(timeout=20)
        context.close()


# Log records ------------------------------------------------------------------


@pytest.mark.process
def test_a_record_is_handled_by_the_applications_logger(executor, assistant, records):
    future = submit_call(executor, ft.log, logging.INFO, "%d apples", 3)
    wait_done(assistant, future)
    [record] = records.records
    assert record.getMessage() == "3 apples"
    assert record.levelno == logging.INFO
    assert record.name == ft.logger.name
    assert record.process != os.getpid()
    assert record.offload_task.startswith("forwarding_tasks.log (task ")
    assert records.threads == {threading.get_ident()}


@pytest.mark.process
def test_an_exception_is_sent_as_text(executor, assistant, records):
    wait_done(assistant, submit_call(executor, ft.log_exception))
    [record] = records.records
    assert record.exc_info is None
    assert "ValueError: inner trouble" in record.exc_text
    assert "inner trouble" in logging.Formatter().format(record)


@pytest.mark.process
def test_an_extra_that_does_not_pickle_is_sent_as_its_repr(executor, assistant, records):
    future = submit_call(executor, ft.log_with_extra)
    wait_done(assistant, future)
    assert future.state == COMPLETED
    [record] = records.records
    assert record.lock == "<unpicklable>" and record.count == 3


@pytest.mark.process
def test_records_below_the_applications_levels_are_not_handled(
    executor, assistant, records
):
    logging.getLogger().setLevel(logging.WARNING)
    wait_done(assistant, submit_call(executor, ft.log, logging.INFO, "too low"))
    quiet = logging.getLogger(ft.logger.name)
    quiet.setLevel(logging.ERROR)
    try:
        wait_done(assistant, submit_call(executor, ft.log, logging.WARNING, "quiet"))
        wait_done(assistant, submit_call(executor, ft.log, logging.ERROR, "loud"))
    finally:
        quiet.setLevel(logging.NOTSET)
    assert [r.getMessage() for r in records.records] == ["loud"]


@pytest.mark.process
def test_records_keep_their_order_with_the_tasks_messages(executor, assistant, records):
    order: list[Any] = []
    future = submit_progress(executor, ft.log_between_progress)
    future.observe(lambda event: order.append(event.new), "progress")
    records.emit = lambda record: order.append(record.getMessage())  # type: ignore[method-assign]
    wait_done(assistant, future)
    assert order == [1, "between", 2]


@pytest.mark.process
def test_forward_logging_false_leaves_them_in_the_worker(assistant, records):
    context, executor = make_executor(assistant, forward_logging=False)
    try:
        wait_done(assistant, submit_call(executor, ft.log, logging.WARNING, "stays"))
    finally:
        executor.shutdown(timeout=20)
        context.close()
    assert records.records == []


@pytest.mark.parametrize("option", ["forward_warnings", "forward_logging"])
def test_a_flag_that_is_not_a_bool_is_a_type_error(option):
    with pytest.raises(TypeError, match=f"{option}=...\\) must be True or False"):
        MultiprocessingContext(**{option: "yes"})


# Threads: nothing to forward ----------------------------------------------------


def test_on_threads_warnings_follow_the_applications_filters_directly(
    traits_executor, offload_assistant
):
    # filterwarnings = error applies in the worker thread itself.
    future = submit_call(traits_executor, ft.warn, "in a thread")
    wait_done(offload_assistant, future)
    assert future.state == FAILED
    assert future.exception[0] == "UserWarning"


def test_on_threads_records_reach_the_handlers_directly(
    traits_executor, offload_assistant, records
):
    future = submit_call(traits_executor, ft.log, logging.INFO, "from a thread")
    wait_done(offload_assistant, future)
    [record] = records.records
    assert record.getMessage() == "from a thread"
    assert not hasattr(record, "offload_task")
    assert records.threads != {threading.get_ident()}


# Dask ---------------------------------------------------------------------------


@pytest.mark.dask
# "context" names the kind, so that the leak check starts the shared
# cluster before its snapshot.
@pytest.mark.parametrize("context", ["dask"])
def test_on_dask_warnings_and_records_are_forwarded(
    context, offload_assistant, records, shared_dask_cluster
):
    from conftest import CONTEXTS, load

    DaskContext = load(CONTEXTS, context)
    address = shared_dask_cluster
    with DaskContext(address=address) as context:
        executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
        try:
            warned = submit_call(executor, ft.warn, "from dask", ft.TaskWarning)
            with pytest.warns(ft.TaskWarning, match="from dask"):
                wait_done(offload_assistant, warned)
            logged = submit_call(executor, ft.log, logging.WARNING, "dask %s", "record")
            wait_done(offload_assistant, logged)
        finally:
            executor.shutdown(timeout=20)
    [record] = records.records
    assert record.getMessage() == "dask record"
    assert record.offload_task.startswith("forwarding_tasks.log (task ")
