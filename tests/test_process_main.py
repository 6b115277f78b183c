"""Worker processes and the application's main module.

Workers started by ``spawn`` or ``forkserver`` run the main script again, as
``__mp_main__``, before they take work.  These tests run real scripts in
their own processes, the way users run them: a script without an ``if
__name__ == "__main__":`` guard, a script fed on standard input or given
with ``-c``, and a script whose tasks keep per-worker state in its globals.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
import textwrap

import pytest

from offload.api import MultiprocessingContext

pytestmark = pytest.mark.process

#: Seconds a script of these tests may take, all its workers included.
SCRIPT_TIMEOUT = 90


def run_script(args: list[str], *, stdin: str | None = None, cwd: str | None = None,
               timeout: float = SCRIPT_TIMEOUT) -> subprocess.CompletedProcess:
    """Run ``python *args`` in a session of its own; kill what is left after.

    Whatever the script starts (forkserver, workers, a worker stuck running
    the application) is in that session, so nothing outlives the test, even
    when the script hangs.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("APP_")}
    process = subprocess.Popen(
        [sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=cwd, env=env, start_new_session=True,
    )
    try:
        out, err = process.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"the script hung for {timeout} s; stdout:\n{out}\nstderr:\n{err}")
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def last_json(stdout: str) -> dict:
    """The last line of ``stdout`` that is JSON (what the script reports)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(("{", "[")):
            return json.loads(line)
    raise AssertionError(f"no report in the script's output:\n{stdout}")


# 7. A script without a __main__ guard ------------------------------------------

UNGUARDED_APP = """
import asyncio, json, os, time
from offload.api import AsyncioEventLoop, MultiprocessingContext, TraitsExecutor, submit_call

# The person using the application sits at the first process only.
USER = os.environ.setdefault("APP_USER_PID", str(os.getpid())) == str(os.getpid())

def square(x):
    return x * x

context = MultiprocessingContext(start_method={method!r})
loop = asyncio.new_event_loop()
executor = TraitsExecutor(context=context, event_loop=AsyncioEventLoop(event_loop=loop))
future = submit_call(executor, square, 7)
started = time.monotonic()

async def gui_loop():
    # Stands for app.configure_traits(), which runs until the user closes
    # the window: here, once the future is done (or after 30 s).  In a
    # worker that runs this script again, nobody ever closes it.
    while not (USER and (future.done or time.monotonic() - started > 30)):
        await asyncio.sleep(0.01)

loop.run_until_complete(gui_loop())
print(json.dumps({{
    "state": future.state,
    "seconds": time.monotonic() - started,
    "message": future.exception[1] if future.state == "failed" else "",
}}), flush=True)
executor.shutdown(timeout=10)
context.close()
loop.close()
"""


@pytest.mark.timeout(2 * SCRIPT_TIMEOUT)
@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_an_unguarded_script_that_ends_in_its_gui_loop_fails_within_seconds(tmp_path, method):
    script = tmp_path / "app.py"
    script.write_text(UNGUARDED_APP.format(method=method))
    out = run_script([str(script)], cwd=str(tmp_path))
    report = last_json(out.stdout)
    assert report["state"] == "failed", (report, out.stderr)
    assert report["seconds"] < 20
    assert "if __name__ == '__main__':" in report["message"]
    # Each worker said why it stopped running the application.
    assert "without an if __name__ == '__main__': guard" in out.stderr
    assert out.returncode == 0, out.stderr


def test_a_context_made_while_a_worker_imports_the_main_module_names_the_guard(tmp_path):
    from offload._backends.main_script import importing_main_module

    # What a worker does with the main script, here in this process.
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent("""
        from offload.api import MultiprocessingContext
        context = MultiprocessingContext()
    """))
    with pytest.raises(RuntimeError, match=r"if __name__ == '__main__':") as info:
        runpy.run_path(str(script), run_name="__mp_main__")
    assert "MultiprocessingContext()" in str(info.value)
    assert not importing_main_module()


def test_a_context_made_by_a_guarded_script_is_fine():
    from offload._backends.main_script import importing_main_module

    assert not importing_main_module()
    with MultiprocessingContext() as context:
        assert not context.closed


# 8. A script fed on standard input, or given with -c ---------------------------

MAIN_ONLY_APP = """
import asyncio, json
from offload.api import AsyncioEventLoop, MultiprocessingContext, TraitsExecutor, submit_call

class Point:
    def __init__(self, x):
        self.x = x

def square(x):
    return x * x

def make_point(x):
    return Point(x)

if __name__ == "__main__":
    context = MultiprocessingContext(start_method={method!r})
    loop = asyncio.new_event_loop()
    executor = TraitsExecutor(context=context, event_loop=AsyncioEventLoop(event_loop=loop))
    futures = [
        submit_call(executor, square, 7),
        submit_call(executor, lambda: 5),
        submit_call(executor, make_point, 3),
    ]

    async def wait():
        while not all(future.done for future in futures):
            await asyncio.sleep(0.01)

    loop.run_until_complete(asyncio.wait_for(wait(), 60))
    report = [
        future.result if future.state == "completed" else future.exception[1]
        for future in futures
    ]
    point = report[2]
    report[2] = [type(point).__name__, isinstance(point, Point), getattr(point, "x", None)]
    print(json.dumps({{"results": report, "file": globals().get("__file__")}}))
    executor.shutdown(timeout=10)
    context.close()
    loop.close()
"""


@pytest.mark.timeout(2 * SCRIPT_TIMEOUT)
@pytest.mark.parametrize(
    "how, method",
    [("stdin", "forkserver"), ("stdin", "spawn"), ("-c", "forkserver")],
)
def test_a_script_fed_on_stdin_or_given_with_c_runs_its_tasks(tmp_path, how, method):
    source = MAIN_ONLY_APP.format(method=method)
    if how == "stdin":
        out = run_script(["-"], stdin=source, cwd=str(tmp_path))
    else:
        out = run_script(["-c", source], cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    report = last_json(out.stdout)
    assert report["results"] == [49, 5, ["Point", True, 3]], out.stderr
    # The script sees its own globals as Python set them.
    assert report["file"] == ("<stdin>" if how == "stdin" else None)


# 9. Functions of the main script go by reference ------------------------------

PER_WORKER_STATE_APP = """
import asyncio, concurrent.futures, json, multiprocessing, os, pickle
from offload.api import AsyncioEventLoop, MultiprocessingContext, TraitsExecutor, submit_call

_MODEL = {{}}

class Result:
    def __init__(self, value):
        self.value = value

class AppError(Exception):
    pass

def load_model():
    # Loaded once per worker process, then kept in this global.
    if "model" not in _MODEL:
        _MODEL["loads"] = _MODEL.get("loads", 0) + 1
        _MODEL["model"] = "weights"
    return _MODEL["model"]

def helper(x):
    return x + 1

def predict(x):
    load_model()
    return [os.getpid(), _MODEL["loads"], pickle.loads(pickle.dumps(helper))(x)]

def fan_out(n):
    # A pool of the task's own, running another function of this script.
    context = multiprocessing.get_context("forkserver")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return list(pool.map(helper, range(n)))

def make_result(x):
    return Result(x)

def fail():
    raise AppError("no")

if __name__ == "__main__":
    def defined_in_the_guard(x):
        return -x

    context = MultiprocessingContext(start_method={method!r})
    loop = asyncio.new_event_loop()
    executor = TraitsExecutor(
        context=context, event_loop=AsyncioEventLoop(event_loop=loop), max_workers=1
    )
    predictions = [submit_call(executor, predict, n) for n in range(5)]
    others = {{
        "fan_out": submit_call(executor, fan_out, 3),
        "result": submit_call(executor, make_result, 4),
        "fail": submit_call(executor, fail),
        "guard": submit_call(executor, defined_in_the_guard, 2),
        "lambda": submit_call(executor, lambda: 8),
    }}
    futures = predictions + list(others.values())

    async def wait():
        while not all(future.done for future in futures):
            await asyncio.sleep(0.01)

    loop.run_until_complete(asyncio.wait_for(wait(), 60))

    def outcome(future):
        if future.state == "completed":
            return future.result
        return {{"failed": future.exception[:2]}} if future.state == "failed" else future.state

    result = outcome(others["result"])
    report = {{
        "predictions": [outcome(future) for future in predictions],
        "fan_out": outcome(others["fan_out"]),
        "result": [isinstance(result, Result), getattr(result, "value", None)],
        "fail": list(others["fail"].exception[:2]),
        "fail_object": isinstance(others["fail"].exception_object, AppError),
        "guard": outcome(others["guard"]),
        "lambda": outcome(others["lambda"]),
    }}
    print(json.dumps(report))
    executor.shutdown(timeout=10)
    context.close()
    loop.close()
"""


@pytest.mark.timeout(2 * SCRIPT_TIMEOUT)
@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_main_script_functions_go_by_reference_and_keep_per_worker_state(tmp_path, method):
    script = tmp_path / "app.py"
    script.write_text(PER_WORKER_STATE_APP.format(method=method))
    out = run_script([str(script)], cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    report = last_json(out.stdout)
    predictions = report["predictions"]
    assert all(isinstance(p, list) for p in predictions), (predictions, out.stderr)
    # One worker, one model load, and helper pickles by reference in it.
    assert {pid for pid, _, _ in predictions} == {predictions[0][0]}
    assert [loads for _, loads, _ in predictions] == [1] * 5
    assert [value for _, _, value in predictions] == [1, 2, 3, 4, 5]
    assert report["fan_out"] == [1, 2, 3]
    assert report["result"] == [True, 4]
    assert report["fail"] == ["__main__.AppError", "no"]
    assert report["fail_object"] is True
    # By value where the workers do not have it.
    assert report["guard"] == -2
    assert report["lambda"] == 8


# Which names the workers' copy of the main script has ------------------------


def test_bound_names_are_those_a_worker_binds_outside_the_main_guard(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent("""
        import os, json as j
        from math import sqrt, pi as PI
        from package.sub import *
        X = Y = 1
        (A, [B, *C]) = 1, [2, 3, 4]
        T: int = 1
        U: int
        N += 1

        def f(): pass
        async def g(): pass
        class K: pass

        if os.name == "posix":
            def posix_only(): pass
        else:
            windows_only = 1
        try:
            import numpy
        except ImportError as error:
            numpy = None
        for item in range(3):
            loop_value = item
        with open(__file__) as handle:
            pass

        if __name__ == "__main__":
            def in_guard(): pass
            def f(): pass  # shadows the top-level f in the application only
            import sys
        else:
            def imported_only(): pass

        if "__main__" == __name__:
            reversed_guard = 1
    """))
    from offload._backends.main_script import bound_names

    names = bound_names(str(script))
    assert names >= {
        "os", "j", "sqrt", "PI", "X", "Y", "A", "B", "C", "T", "N", "g", "K",
        "posix_only", "windows_only", "numpy", "error", "item", "loop_value",
        "handle", "imported_only",
    }
    for name in ("U", "in_guard", "f", "sys", "reversed_guard", "package", "*"):
        assert name not in names


@pytest.mark.parametrize("source", ["def broken(:\n", b"\xff\xfe\x00garbage"])
def test_bound_names_of_a_script_that_does_not_parse_is_empty(tmp_path, source):
    script = tmp_path / "app.py"
    if isinstance(source, bytes):
        script.write_bytes(source)
    else:
        script.write_text(source)
    from offload._backends.main_script import bound_names

    assert bound_names(str(script)) == frozenset()


def test_bound_names_of_a_missing_file_is_empty(tmp_path):
    from offload._backends.main_script import bound_names

    assert bound_names(str(tmp_path / "gone.py")) == frozenset()



DASK_STDIN_APP = """
import asyncio, json
from offload.api import AsyncioEventLoop, DaskContext, TraitsExecutor, submit_call

def square(x):
    return x * x

if __name__ == "__main__":
    with DaskContext(n_workers=1, in_process={in_process}) as context:
        loop = asyncio.new_event_loop()
        executor = TraitsExecutor(context=context, event_loop=AsyncioEventLoop(event_loop=loop))
        futures = [submit_call(executor, square, 7), submit_call(executor, lambda: 5)]

        async def wait():
            while not all(future.done for future in futures):
                await asyncio.sleep(0.01)

        loop.run_until_complete(asyncio.wait_for(wait(), 120))
        print(json.dumps([
            future.result if future.state == "completed" else future.exception[1]
            for future in futures
        ]))
        executor.shutdown(timeout=20)
        loop.close()
"""


@pytest.mark.dask
@pytest.mark.timeout(2 * SCRIPT_TIMEOUT)
@pytest.mark.parametrize("in_process", [False, True], ids=["helper", "in-process"])
def test_a_script_fed_on_stdin_runs_its_tasks_on_dask(tmp_path, in_process):
    pytest.importorskip("distributed")
    out = run_script(["-"], stdin=DASK_STDIN_APP.format(in_process=in_process), cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout) == [49, 5], out.stderr


SLOW_MAIN_APP = """
import asyncio, json, logging, time

if __name__ == "__mp_main__":
    time.sleep(3)  # a worker running this script is slow to be ready

def square(x):
    return x * x

if __name__ == "__main__":
    from offload._backends.process import pool as process_pool
    from offload.api import AsyncioEventLoop, MultiprocessingContext, TraitsExecutor, submit_call

    logging.basicConfig(level=logging.WARNING)
    process_pool.START_WARNING = 1.0
    with MultiprocessingContext() as context:
        loop = asyncio.new_event_loop()
        executor = TraitsExecutor(context=context, event_loop=AsyncioEventLoop(event_loop=loop))
        future = submit_call(executor, square, 7)

        async def wait():
            while not future.done:
                await asyncio.sleep(0.01)

        loop.run_until_complete(asyncio.wait_for(wait(), 60))
        print(json.dumps([future.state, future.result]))
        executor.shutdown(timeout=10)
        loop.close()
"""


@pytest.mark.timeout(2 * SCRIPT_TIMEOUT)
def test_a_worker_slow_to_run_the_main_script_is_logged_and_still_used(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(SLOW_MAIN_APP)
    out = run_script([str(script)], cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout) == ["completed", 49]
    assert "has not started after 1 s" in out.stderr
    assert str(script) in out.stderr and "__main__': guard" in out.stderr


PRELOAD_APP = """
import asyncio, json, psutil
from offload.api import AsyncioEventLoop, MultiprocessingContext, TraitsExecutor, submit_call

if __name__ == "__main__":
    with MultiprocessingContext(start_method="forkserver") as context:
        loop = asyncio.new_event_loop()
        executor = TraitsExecutor(context=context, event_loop=AsyncioEventLoop(event_loop=loop))
        future = submit_call(executor, abs, -1)

        async def wait():
            while not future.done:
                await asyncio.sleep(0.01)

        loop.run_until_complete(asyncio.wait_for(wait(), 60))
        servers = [
            " ".join(child.cmdline()) for child in psutil.Process().children()
            if "forkserver" in " ".join(child.cmdline())
        ]
        print(json.dumps(servers))
        executor.shutdown(timeout=10)
        loop.close()
"""


@pytest.mark.timeout(2 * SCRIPT_TIMEOUT)
def test_the_forkserver_preloads_the_worker_modules_and_not_the_main_script(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(PRELOAD_APP)
    out = run_script([str(script)], cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    [server] = last_json(out.stdout)
    assert "'offload._backends.process.worker'" in server
    assert "'offload._futures.submit'" in server
    assert "'__main__'" not in server
