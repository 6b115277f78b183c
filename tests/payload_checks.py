"""What the payload tests (arrays and bytes-like objects) share: finding a
process's payload segments, and killing an application that holds one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def payload_segments(pid: int) -> list[str]:
    """The payload segments in /dev/shm made by process ``pid``."""
    stem = f"ofl{pid % 0xFFFFF:x}"
    return [
        name for name in os.listdir("/dev/shm")
        if "_p" in name and name.partition("_p")[0][:-6] == stem
    ]


def wait_until(condition: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)  # polling another process's clean-up
    return True


#: An application that submits ``{payload}`` (an expression, after
#: ``{imports}``) to a task that holds it, says "running", and waits to be
#: killed.
_APP = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {tests_dir!r})
    {imports}
    from payload_tasks import hold_and_wait
    from offload.api import (
        AsyncioEventLoop, MultiprocessingContext, TraitsExecutor, submit_call,
    )

    def main():
        start_method, marker = sys.argv[1], sys.argv[2]
        context = MultiprocessingContext(start_method=start_method)
        executor = TraitsExecutor(context=context, event_loop=AsyncioEventLoop())
        submit_call(executor, hold_and_wait, {payload}, marker, 60)
        deadline = time.monotonic() + 40
        while not os.path.exists(marker):
            if time.monotonic() > deadline:
                print("task never started", flush=True)
                return
            time.sleep(0.01)
        print("running", flush=True)
        time.sleep(120)  # until killed

    if __name__ == "__main__":
        main()
    """
)


def check_sigkilled_application_leaves_no_segment(
    start_method: str, tmp_path: Path, imports: str, payload: str
) -> None:
    """SIGKILL an application while its task holds ``payload`` (which must
    go through shared memory): its segments must go all the same."""
    script = tmp_path / "app.py"
    script.write_text(_APP.format(tests_dir=TESTS_DIR, imports=imports, payload=payload))
    marker = str(tmp_path / "holding")
    app = subprocess.Popen(
        [sys.executable, str(script), start_method, marker],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    descendants: list[psutil.Process] = []
    try:
        assert app.stdout is not None
        line = app.stdout.readline()  # bounded by the app's own deadline
        assert line.strip() == "running", line + (app.stderr.read() if app.poll() else "")
        descendants = psutil.Process(app.pid).children(recursive=True)
        assert payload_segments(app.pid), "the argument was not in shared memory"
        os.kill(app.pid, signal.SIGKILL)
        app.wait(timeout=10)
        assert wait_until(lambda: not payload_segments(app.pid), 20), payload_segments(app.pid)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(timeout=10)
        for proc in descendants:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(descendants, timeout=10)
        for stream in (app.stdout, app.stderr):
            if stream is not None:
                stream.close()
