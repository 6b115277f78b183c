"""A Dask cluster of separate processes on loopback, for the tests.

A scheduler and workers started with Dask's own command lines, as a user
runs a cluster.  Nothing of it lives in the test process, so the test
process holds only what its own clients open (which the leak check can
then check exactly).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def wait_for(condition, timeout: float, what: str) -> None:
    """Poll ``condition()`` until true; RuntimeError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Cluster:
    """A scheduler and ``workers`` single-threaded workers, all on 127.0.0.1.

    ``nanny=False`` makes each worker the process started here (so a test
    can kill it); with nannies, Dask restarts a worker that dies.
    """

    def __init__(self, directory: str, workers: int = 2, nanny: bool = False) -> None:
        self.processes: list[subprocess.Popen] = []
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([HERE, *sys.path]),
            # As DaskContext's embedded cluster: every task to a worker at once.
            DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION="inf",
        )
        scheduler_file = os.path.join(directory, "scheduler.json")
        self._start(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", "0", "--no-dashboard", "--scheduler-file", scheduler_file],
            env, directory, "scheduler",
        )
        wait_for(lambda: os.path.exists(scheduler_file), 60, "the scheduler")
        wait_for(lambda: os.path.getsize(scheduler_file) > 0, 10, "the scheduler file")
        with open(scheduler_file) as file:
            self.address = json.load(file)["address"]
        self.workers = [
            self._start(
                [sys.executable, "-m", "distributed.cli.dask_worker", self.address,
                 "--host", "127.0.0.1", "--nthreads", "1",
                 "--nanny" if nanny else "--no-nanny",
                 "--no-dashboard", "--name", f"worker-{n}"],
                env, directory, f"worker-{n}",
            )
            for n in range(workers)
        ]

    def _start(self, args: list[str], env: dict, directory: str, name: str) -> subprocess.Popen:
        log = open(os.path.join(directory, f"{name}.log"), "wb")  # noqa: SIM115
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.processes.append(process)
        return process

    def stop(self) -> list[int]:
        """Stop the workers, then the scheduler; return the pids killed.

        Each process gets SIGTERM and 15 s to exit, then SIGKILL.  Workers
        first: told to stop while the scheduler went too, a worker at times
        (one stop in three, here) did not exit: its close failed on the lost
        scheduler connection, and it was killed after the whole 15 s, which
        cost the last test of a session 15 s.  Stopped before the scheduler,
        workers exited within 0.5 s in 8 stops of 8.
        """
        killed = []
        # The scheduler was started first.
        for group in (self.processes[1:], self.processes[:1]):
            for process in group:
                if process.poll() is None:
                    process.terminate()
            for process in group:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=15)
                    killed.append(process.pid)
        return killed
