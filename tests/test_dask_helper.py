"""DaskContext(): the embedded cluster and its client in a helper process.

What the helper must not get wrong: settings and modules that reach it,
results and errors that cross it, and what happens when it, or the
application, goes away.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

pytest.importorskip("distributed")

import dask_task_functions as dtf  # noqa: E402
import task_functions as tf  # noqa: E402
from conftest import wait_done, wait_file  # noqa: E402
from offload.api import (  # noqa: E402
    FAILED,
    DaskContext,
    TraitsExecutor,
    submit_call,
    submit_progress,
)

pytestmark = [pytest.mark.dask, pytest.mark.process]

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait_gone(pids, timeout: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if not _gone(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)  # polling other processes' exit
        alive = [pid for pid in alive if not _gone(pid)]
    return alive


def _worker_pids(context: DaskContext) -> list[int]:
    return context._helper.call(dtf.worker_pids)


def test_tasks_results_and_the_settings_reach_the_helper(offload_assistant):
    import dask

    with dask.config.set({"offload-test-marker": "from the application"}):
        context = DaskContext(n_workers=1, processes=True, timeout=30)
    try:
        settings = context._helper.call(dtf.cluster_settings)
        assert settings["pid"] == context._helper.pid != os.getpid()
        # The application's Dask config, and the embedded cluster's own.
        assert settings["marker"] == "from the application"
        assert settings["tcp_user_timeout"] == 300_000
        assert settings["transition_log"] == settings["client_log"] == 10
        executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
        try:
            # tf and dtf are found on the workers through the helper's
            # sys.path, which is the application's.
            squared = submit_call(executor, tf.square, 12)
            seen = []
            counted = submit_progress(executor, dtf.count_messages, 300)
            counted.observe(lambda event: seen.append(event.new), "progress")
            closure = submit_call(executor, lambda: 6 * 7)
            for future in (squared, counted, closure):
                wait_done(offload_assistant, future, timeout=60)
            assert (squared.result, counted.result, closure.result) == (144, 300, 42)
            assert seen == list(range(300))
            failed = submit_call(executor, tf.fail, "no good")
            wait_done(offload_assistant, failed, timeout=60)
            assert failed.state == FAILED
            assert "no good" in failed.exception[1]
        finally:
            executor.shutdown(timeout=30)
        # The pool on its own: a plain call's result crosses the helper too.
        pool = context.worker_pool()
        try:
            assert pool.submit(pow, 2, 10).result(timeout=60) == 1024
            # As on any Dask cluster: the pool explains a plain call's error.
            with pytest.raises(RuntimeError, match="ZeroDivisionError"):
                pool.submit(divmod, 1, 0).result(timeout=60)
        finally:
            pool.shutdown()
        # A client of the helper's scheduler, in this process, on request.
        assert context.client.scheduler.address == context.scheduler_address
        assert context.client.submit(abs, -5).result(timeout=30) == 5
    finally:
        context.close()
    assert _wait_gone([context._helper.pid]) == []


def test_an_unpicklable_callable_is_a_clear_error_and_the_rest_run(offload_assistant):
    import threading

    lock = threading.Lock()
    with DaskContext(n_workers=1, processes=False, timeout=30) as context:
        executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
        try:
            with pytest.raises(TypeError, match="could not pickle positional argument 0"):
                submit_call(executor, tf.square, lock)
            future = submit_call(executor, tf.square, 5)
            wait_done(offload_assistant, future, timeout=60)
            assert future.result == 25
        finally:
            executor.shutdown(timeout=30)


def test_a_helper_that_dies_fails_its_tasks_and_refuses_more(offload_assistant, tmp_path):
    context = DaskContext(n_workers=1, processes=True, timeout=30)
    workers = _worker_pids(context)
    executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
    try:
        pid_file, release = str(tmp_path / "pid"), str(tmp_path / "release")
        running = submit_call(executor, dtf.pid_then_wait, pid_file, release)
        queued = [submit_call(executor, tf.square, n) for n in range(3)]
        wait_file(offload_assistant, pid_file, timeout=60)
        os.kill(context._helper.pid, signal.SIGKILL)
        for future in [running, *queued]:
            wait_done(offload_assistant, future, timeout=30)
            assert future.state == FAILED
            assert ("helper process of the embedded Dask cluster was killed by SIGKILL"
                    in future.exception[1])
        with pytest.raises(RuntimeError, match="make a new DaskContext"):
            submit_call(executor, tf.square, 1)
    finally:
        executor.shutdown(timeout=30)
        context.close()
    # Its workers follow it.
    assert _wait_gone(workers) == []


def test_a_helper_that_fails_to_start_says_why():
    with pytest.raises(TypeError, match="no_such_option"):
        DaskContext(n_workers=1, processes=False, timeout=30, no_such_option=1)


APP = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests_dir!r})
    import task_functions as tf
    from offload.api import AsyncioEventLoop, DaskContext, TraitsExecutor, submit_call
    from offload.testing.pytest_plugin import OffloadAssistant

    # No __main__ guard: the helper and its workers never import this file.
    context = DaskContext(n_workers=1, processes=True, timeout=30)
    assistant = OffloadAssistant(AsyncioEventLoop())
    executor = TraitsExecutor(context=context, event_loop=assistant.event_loop)
    future = submit_call(executor, tf.square, 9)
    assistant.run_until(future, "done", lambda f: f.done, timeout=60)
    workers = context._helper.call(__import__("dask_task_functions").worker_pids)
    print(context._helper.pid, *workers, future.result, flush=True)
    # Exits with the context open and a task running.
    submit_call(executor, tf.wait_for_file, "/nonexistent/never", 600)
    """
)


def test_an_application_that_exits_without_closing_leaves_nothing_running(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(APP.format(tests_dir=TESTS_DIR))
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120,
        start_new_session=True,
    )
    assert done.returncode == 0, done.stderr
    *pids, result = (int(word) for word in done.stdout.split())
    assert result == 81
    assert len(pids) == 2
    assert _wait_gone(pids) == [], f"left running {time.monotonic() - start:.1f} s in"


def test_close_after_the_helper_is_gone_does_not_wait_for_it(caplog):
    context = DaskContext(n_workers=1, processes=False, timeout=30)
    os.kill(context._helper.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while context._helper.status == "running":
        assert time.monotonic() < deadline
        time.sleep(0.01)  # polling the reader thread's notice
    context.close()
    assert context.closed
    # Nothing was waited for in vain: no close timed out, nothing was killed.
    assert "did not close within" not in caplog.text
    assert "killing it" not in caplog.text


def test_a_config_section_that_does_not_pickle_is_left_out_and_said(caplog):
    import threading

    import dask

    with dask.config.set({"offload-test-unpicklable": threading.Lock(),
                          "offload-test-marker": "kept"}):
        context = DaskContext(n_workers=1, processes=False, timeout=30)
    try:
        assert context._helper.call(dtf.cluster_settings)["marker"] == "kept"
    finally:
        context.close()
    assert "'offload-test-unpicklable' cannot be pickled" in caplog.text


def test_a_ctrl_c_at_the_terminal_leaves_the_helper_to_the_application(offload_assistant):
    # SIGINT reaches every process of the terminal's group; the application
    # may handle it and carry on, and its cluster must still be there.
    with DaskContext(n_workers=1, processes=True, timeout=30) as context:
        workers = _worker_pids(context)
        for pid in [context._helper.pid, *workers]:
            os.kill(pid, signal.SIGINT)
        executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
        try:
            future = submit_call(executor, tf.square, 4)
            wait_done(offload_assistant, future, timeout=60)
            assert future.result == 16
        finally:
            executor.shutdown(timeout=30)
        assert _worker_pids(context) == workers


def test_a_message_that_does_not_pickle_is_dropped_alone(caplog):
    import pickle
    import threading

    from offload._backends.dask.wire import pickled_batch as _pickled_batch

    batch = [("event", "a", (1.0, b"x")), ("event", "all", threading.Lock()),
             ("done", "k", "finished", None)]
    assert pickle.loads(_pickled_batch(batch)) == [batch[0], batch[2]]
    assert "'event' message to or from the Dask helper could not be pickled" in caplog.text


def test_a_runners_end_is_not_fetched_from_its_worker(offload_assistant):
    # The helper fetched every finished runner's None with future.result(),
    # a round trip to a worker per task: at 100,000 tasks it fell minutes
    # behind, with 65,000 Dask futures still pending once all were done here.
    with DaskContext(n_workers=1, processes=False, timeout=30) as context:
        context._helper.call(dtf.count_result_fetches)
        executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
        try:
            futures = [submit_call(executor, tf.square, n) for n in range(20)]
            for future in futures:
                wait_done(offload_assistant, future, timeout=60)
            assert [f.result for f in futures] == [n * n for n in range(20)]
        finally:
            executor.shutdown(timeout=30)
        assert context._helper.call(dtf.result_fetches) == 0
        # A plain call's result is fetched: once.
        pool = context.worker_pool()
        try:
            assert pool.submit(pow, 3, 3).result(timeout=60) == 27
        finally:
            pool.shutdown()
        assert context._helper.call(dtf.result_fetches) == 1


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"timeout": "10"}, TypeError, "timeout=...) must be a number of seconds"),
        ({"timeout": True}, TypeError, "timeout=...) must be a number of seconds"),
        ({"timeout": 0}, ValueError, "timeout=...) must be more than 0"),
        ({"start_timeout": None}, TypeError, "start_timeout=...) must be a number"),
        ({"start_timeout": -1.0}, ValueError, "start_timeout=...) must be more than 0"),
        ({"start_timeout": float("nan")}, ValueError, "start_timeout=...) must be more"),
    ],
)
def test_a_bad_timeout_is_refused_before_anything_starts(kwargs, error, words):
    import psutil

    before = {child.pid for child in psutil.Process().children(recursive=True)}
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        DaskContext(n_workers=1, processes=False, **kwargs)
    after = {child.pid for child in psutil.Process().children(recursive=True)}
    assert after <= before


def test_a_cluster_slower_than_start_timeout_is_stopped_with_its_workers(tmp_path):
    # Each worker notes its pid, then takes a minute to start: the helper
    # is still waiting for them when the start timeout ends.
    pids = tmp_path / "pids"
    slow_start = (
        "import os, time\n"
        f"with open({str(pids)!r}, 'a') as f: f.write(str(os.getpid()) + '\\n')\n"
        "time.sleep(60)\n"
    )
    import psutil

    # Every process started meanwhile, seen while the call runs: a worker
    # orphaned by its helper would no longer be a descendant afterwards.
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    seen: set[int] = set()
    calling = threading.Event()

    def watch() -> None:
        while not calling.wait(0.05):  # polling other processes, until the call ends
            seen.update(child.pid for child in psutil.Process().children(recursive=True))

    watcher = threading.Thread(target=watch)
    watcher.start()
    start = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match="did not start within 10.0 s.*start_timeout="):
            DaskContext(n_workers=2, processes=True, start_timeout=10.0, preload=[slow_start])
    finally:
        calling.set()
        watcher.join()
    assert time.monotonic() - start < 30
    assert seen - before  # the helper at least
    # Whichever workers reached their preload noted their pids (on a loaded
    # machine, perhaps neither did in 10 s): they must be stopped, and so
    # must everything else the call started.
    workers = [int(line) for line in pids.read_text().split()] if pids.exists() else []
    assert len(workers) <= 2
    assert _wait_gone(sorted(set(workers) | (seen - before))) == []
