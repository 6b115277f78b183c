"""Testing code that uses offload, with pytest and offload's fixtures."""

from offload.api import COMPLETED, FAILED, submit_call, submit_progress


def test_call_completes(traits_executor, offload_assistant):
    future = submit_call(traits_executor, sorted, [3, 1, 2])

    offload_assistant.run_until(future, "done", lambda future: future.done)

    assert future.state == COMPLETED
    assert future.result == [1, 2, 3]


def test_failure_is_reported(traits_executor, offload_assistant):
    future = submit_call(traits_executor, int, "not a number")

    offload_assistant.run_until(future, "done", lambda future: future.done)

    assert future.state == FAILED
    assert future.exception[0] == "ValueError"
    assert isinstance(future.exception_object, ValueError)


def report_halves(value, progress):
    while value > 1:
        value //= 2
        progress(value)
    return "done"


def test_progress_in_order(traits_executor, offload_assistant):
    future = submit_progress(traits_executor, report_halves, 100)
    seen = []
    future.observe(lambda event: seen.append(event.new), "progress")

    offload_assistant.run_until(future, "done", lambda future: future.done)

    assert seen == [50, 25, 12, 6, 3, 1]
    assert future.result == "done"
