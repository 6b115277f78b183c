"""A fork while another thread is inside multiprocessing's resource tracker.

The tracker holds a lock of its own while it registers or unregisters a
name; a child forked meanwhile inherits that lock held, by a thread the
child does not have, and hangs at its first segment.  Under the ``fork``
start method that was a worker that never ran its task (a future that
never ended, seen in CI).  offload's calls into the tracker run inside
``tracker.guard``, which a fork waits for.

The test stands a thread inside the tracker (holding its lock, as the
tracker does while it writes to its process) through offload's own
segment-making call, forks meanwhile, and checks that the child can make
a segment.  (The tracker's lock is reached through a private name here, in
the test only, to hold it the way the tracker does.)
"""

from __future__ import annotations

import os
import threading
import time
from multiprocessing import resource_tracker

import pytest

from offload._backends.process import shm

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here"),
]


def test_a_fork_waits_until_no_thread_of_offloads_is_inside_the_tracker(monkeypatch):
    inside, go = threading.Event(), threading.Event()
    real_register = resource_tracker.register

    def slow_register(name, rtype):
        if threading.current_thread().name == "maker":  # it alone dawdles
            with resource_tracker._resource_tracker._lock:
                inside.set()
                assert go.wait(10)
        real_register(name, rtype)

    monkeypatch.setattr(resource_tracker, "register", slow_register)
    made = []
    maker = threading.Thread(target=lambda: made.append(shm.new_segment(4096)), name="maker")
    maker.start()
    assert inside.wait(10)
    children = []
    forker = threading.Thread(target=lambda: children.append(_fork_a_segment_maker()))
    forker.start()
    forker.join(0.3)
    go.set()  # the maker leaves the tracker; only then may the fork happen
    forker.join(10)
    maker.join(10)
    try:
        assert children, "the fork never happened"
        assert _wait_child(children[0], timeout=10) == 0, "the child hung on its segment"
    finally:
        for segment in made:
            segment.close()
            segment.unlink()


def _fork_a_segment_maker() -> int:
    pid = os.fork()
    if pid == 0:  # the child: make and remove a segment, then report
        code = 1
        try:
            segment = shm.new_segment(4096)
            segment.close()
            segment.unlink()
            code = 0
        finally:
            os._exit(code)
    return pid


def _wait_child(pid: int, timeout: float) -> int | None:
    """The child's exit code; None (and the child killed) if it hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)  # polling a child process, with a deadline
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None
