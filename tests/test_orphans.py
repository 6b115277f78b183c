"""The application killed by SIGKILL: nothing it started may stay behind.

An application (run as a subprocess) starts a context, with tasks running
in its worker processes (or on the local Dask cluster it started), and
reports when they run.  The test records every descendant of the
application with psutil, kills the application with SIGKILL, and waits,
with a deadline, for every one of those processes to be gone.  It also
checks that the shared-memory segments offload made for the application
(cancel flags, named after its pid) are unlinked once it is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import psutil
import pytest

from conftest import CONTEXTS, load

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

#: Seconds the processes an application started may outlive it.
ORPHAN_DEADLINE = 15.0

APP = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {tests_dir!r})
    from conftest import CONTEXTS, load
    from reliability_tasks import block_forever
    from offload.api import AsyncioEventLoop, TraitsExecutor, submit_call

    def main():
        kind, directory, tasks = sys.argv[1], sys.argv[2], int(sys.argv[3])
        cls = load(CONTEXTS, kind)
        context = cls(n_workers=2) if kind == "dask" else cls()
        loop = AsyncioEventLoop()
        executor = TraitsExecutor(context=context, event_loop=loop)
        markers = [os.path.join(directory, f"started-{{n}}") for n in range(tasks)]
        for marker in markers:
            submit_call(executor, block_forever, marker)
        deadline = time.monotonic() + 40
        while not all(os.path.exists(m) for m in markers):
            if time.monotonic() > deadline:
                print("tasks never started", flush=True)
                return
            time.sleep(0.01)
        print("running", flush=True)
        time.sleep(120)  # until killed

    if __name__ == "__main__":
        main()
    """
)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize(
    "context_kind",
    [
        pytest.param("process", marks=pytest.mark.process),
        pytest.param("dask", marks=[pytest.mark.dask, pytest.mark.process]),
    ],
)
def test_sigkilled_application_leaves_no_process_behind(context_kind: str, tmp_path: Any) -> None:
    load(CONTEXTS, context_kind)
    script = tmp_path / "app.py"
    script.write_text(APP.format(tests_dir=TESTS_DIR))
    tasks = 2
    app = subprocess.Popen(
        [sys.executable, str(script), context_kind, str(tmp_path), str(tasks)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Its own session: nothing it leaves can hide in ours, and a kill of
        # the application reaches only the application.
        start_new_session=True,
    )
    descendants: list[psutil.Process] = []
    try:
        assert app.stdout is not None
        line = app.stdout.readline()  # bounded by the app's own 40 s deadline
        assert line.strip() == "running", line + (app.stderr.read() if app.poll() else "")
        descendants = psutil.Process(app.pid).children(recursive=True)
        names = [" ".join(p.cmdline())[-60:] for p in descendants]
        # Workers (and for Dask, nannies and workers) were started.
        assert len(descendants) >= tasks, names
        app_pid = app.pid
        os.kill(app.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        app.wait(timeout=10)
        deadline = killed_at + ORPHAN_DEADLINE
        alive = [p for p in descendants if _alive(p)]
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)  # polling other processes' exit
            alive = [p for p in descendants if _alive(p)]
        left = [(p.pid, " ".join(p.cmdline())[:120]) for p in alive if _alive(p)]
        assert not left, f"still running {ORPHAN_DEADLINE} s after the app was killed: {left}"
        print(f"\n{context_kind}: the {len(descendants)} processes the app started "
              f"were all gone {time.monotonic() - killed_at:.2f} s after SIGKILL")
        stem = f"ofl{app_pid % 0xFFFFF:x}"
        deadline = time.monotonic() + 5
        segments = [n for n in os.listdir("/dev/shm") if n.startswith(stem)]
        while segments and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the resource tracker's clean-up
            segments = [n for n in os.listdir("/dev/shm") if n.startswith(stem)]
        assert not segments, f"shared memory left behind: {segments}"
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(timeout=10)
        for proc in descendants:
            if _alive(proc):
                proc.kill()
        psutil.wait_procs(descendants, timeout=10)
        for stream in (app.stdout, app.stderr):
            if stream is not None:
                stream.close()
