"""Fail a test that leaves a thread, process, file descriptor or shm segment behind.

Use it in a test module with::

    from leak_check import no_leaks  # noqa: F401  (the fixture)

    pytestmark = pytest.mark.usefixtures("no_leaks")

or suite-wide from ``conftest.py``::

    from leak_check import no_leaks  # noqa: F401

    @pytest.fixture(autouse=True)
    def _check_leaks(request):
        if request.node.get_closest_marker("leaks_ok") is None:
            request.getfixturevalue("no_leaks")

What it compares, before the test and after its teardown:

threads
    ``threading.enumerate()`` (Python threads; native threads that Python
    does not know, e.g. Qt's, are not seen).
processes
    Every descendant of this process (``psutil``), zombies included: a child
    that died but was never waited for is a leak too.
file descriptors
    The entries of ``/proc/self/fd`` (Linux) with what they point to.
shared memory
    The segments this process maps (``/dev/shm`` lines of
    ``/proc/self/maps``), and the entries of ``/dev/shm`` that appeared
    during the test and are still there (a segment created and never
    unlinked outlives every process).

Things that legitimately outlive a test are ignored: the process-wide
singletons of ``multiprocessing`` (its resource tracker and forkserver:
their process and the descriptor that talks to them) and threads named in
:data:`PERSISTENT_THREAD_PREFIXES` (Dask's process-wide offload thread).

Threads and processes often end a moment after the code that stopped them
returns (a worker thread past its last ``put``, a child being reaped), so
the check waits up to ``grace`` seconds for the leftovers to go before it
fails, and reports what stayed.

``/dev/shm`` is shared by every process of the machine, so a new entry
there counts only when this test run made it: its name was registered with
``multiprocessing``'s resource tracker by this process (semaphores of
queues and locks, ``SharedMemory`` segments), or it is an offload
cancel-flag segment whose name carries the pid of this process or of one
of its children.  Set ``OFFLOAD_LEAK_CHECK_SHM=all`` to count every new
entry (on a machine where nothing else runs), or ``maps`` to check only
the segments this process maps.

The process-wide ``QApplication``, made by the first Qt test, keeps a few
descriptors (its event dispatcher's eventfd) for the rest of the run; the
test during which it appeared may leave those.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is a test dependency
    psutil = None

#: Threads whose name starts with one of these may outlive a test: they are
#: made once per process by a library and kept on purpose.
PERSISTENT_THREAD_PREFIXES: tuple[str, ...] = (
    "Dask-Offload",  # distributed.utils' process-wide offload executor
    "Dask-Callback-Thread",  # distributed.Future's class-wide callback pool
    # offload's per-process outbox flusher of Dask workers: it lives in the
    # test process too when a test runs an in-process cluster.
    "offload-dask-flusher",
    "asyncio_",  # asyncio's default executor, shut down when its loop closes
)

#: Seconds to wait for leftovers to go before failing
#: (``OFFLOAD_LEAK_CHECK_GRACE`` overrides it).
DEFAULT_GRACE = float(os.environ.get("OFFLOAD_LEAK_CHECK_GRACE", "10"))

_SHM_DIR = "/dev/shm"


@dataclass
class Snapshot:
    """What the process holds at one moment."""

    threads: set[threading.Thread] = field(default_factory=set)
    processes: dict[int, str] = field(default_factory=dict)
    fds: dict[int, str] = field(default_factory=dict)
    shm_mapped: set[str] = field(default_factory=set)
    shm_files: set[str] = field(default_factory=set)
    qt_app: bool = False


def _describe_process(proc: psutil.Process) -> str:
    try:
        status = proc.status()
        cmdline = " ".join(proc.cmdline())[:200]
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return "(zombie or gone)"
    except psutil.AccessDenied:
        return "(access denied)"
    return f"[{status}] {cmdline}"


def _processes() -> dict[int, str]:
    if psutil is None:
        return {}
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return {}
    return {child.pid: _describe_process(child) for child in children}


def _fds() -> dict[int, str]:
    fd_dir = "/proc/self/fd"
    if not os.path.isdir(fd_dir):
        return {}
    fds = {}
    for name in os.listdir(fd_dir):
        try:
            fds[int(name)] = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            # The descriptor listdir itself used, closed already.
            continue
    return fds


def _shm_mapped() -> set[str]:
    try:
        with open("/proc/self/maps") as maps:
            return {
                line.split(None, 5)[-1].strip()
                for line in maps
                if _SHM_DIR + "/" in line
            }
    except OSError:
        return set()


def _shm_files() -> set[str]:
    if os.environ.get("OFFLOAD_LEAK_CHECK_SHM") == "maps":
        return set()
    try:
        return set(os.listdir(_SHM_DIR))
    except OSError:
        return set()


#: Names this process registered with multiprocessing's resource tracker.
_REGISTERED: set[str] = set()


def _record_registrations() -> None:
    """Wrap ``resource_tracker.register`` to learn which names we made.

    ``multiprocessing.synchronize`` and ``shared_memory`` look the function
    up on the module at each call, so wrapping the module attribute sees
    every semaphore and segment made in this process from now on.
    """
    from multiprocessing import resource_tracker

    register = resource_tracker.register
    if getattr(register, "_offload_leak_check", False):
        return

    def recording_register(name: str, rtype: str) -> None:
        _REGISTERED.add(name)
        register(name, rtype)

    recording_register._offload_leak_check = True  # type: ignore[attr-defined]
    resource_tracker.register = recording_register


_record_registrations()


def _ours(entry: str, pids: set[int]) -> bool:
    """Whether the ``/dev/shm`` entry ``entry`` was made by this test run."""
    if os.environ.get("OFFLOAD_LEAK_CHECK_SHM") == "all":
        return True
    # Semaphore "/mp-abc" is the file "sem.mp-abc"; segment "/x" is "x".
    bare = entry[4:] if entry.startswith("sem.") else entry
    if "/" + bare in _REGISTERED or bare in _REGISTERED:
        return True
    # offload's cancel-flag segments: "ofl" + (pid % 0xFFFFF in hex) + 6 hex.
    if entry.startswith("ofl"):
        stem = entry[3:].split("_", 1)[0]
        return stem[:-6] in {f"{pid % 0xFFFFF:x}" for pid in pids}
    return False


def _qt_app() -> bool:
    widgets = (
        sys.modules.get("PySide6.QtWidgets")
        or sys.modules.get("PyQt6.QtWidgets")
        or sys.modules.get("PyQt5.QtWidgets")
    )
    if widgets is None:
        return False
    return widgets.QApplication.instance() is not None


def take_snapshot() -> Snapshot:
    """Record the threads, child processes, descriptors and shm segments now."""
    return Snapshot(
        threads=set(threading.enumerate()),
        processes=_processes(),
        fds=_fds(),
        shm_mapped=_shm_mapped(),
        shm_files=_shm_files(),
        qt_app=_qt_app(),
    )


def _singletons() -> tuple[set[int], set[int]]:
    """(pids, fds) of multiprocessing's process-wide helper processes."""
    pids: set[int] = set()
    fds: set[int] = set()
    tracker_module = sys.modules.get("multiprocessing.resource_tracker")
    tracker = getattr(tracker_module, "_resource_tracker", None)
    if tracker is not None:
        if getattr(tracker, "_pid", None) is not None:
            pids.add(tracker._pid)
        if getattr(tracker, "_fd", None) is not None:
            fds.add(tracker._fd)
    forkserver_module = sys.modules.get("multiprocessing.forkserver")
    forkserver = getattr(forkserver_module, "_forkserver", None)
    if forkserver is not None:
        if getattr(forkserver, "_forkserver_pid", None) is not None:
            pids.add(forkserver._forkserver_pid)
        if getattr(forkserver, "_forkserver_alive_fd", None) is not None:
            fds.add(forkserver._forkserver_alive_fd)
    return pids, fds


def _persistent(thread: threading.Thread) -> bool:
    return thread.name.startswith(PERSISTENT_THREAD_PREFIXES)


def leftovers(before: Snapshot) -> list[str]:
    """Describe everything present now that was not in ``before``."""
    after = take_snapshot()
    singleton_pids, singleton_fds = _singletons()
    problems = []
    for thread in sorted(after.threads - before.threads, key=lambda t: t.name):
        if thread.is_alive() and not _persistent(thread):
            kind = "daemon thread" if thread.daemon else "thread"
            problems.append(f"{kind} {thread.name!r} still running")
    for pid, description in sorted(after.processes.items()):
        if pid not in before.processes and pid not in singleton_pids:
            problems.append(f"child process {pid} still exists: {description}")
    qt_app_appeared = after.qt_app and not before.qt_app
    for fd, target in sorted(after.fds.items()):
        if fd in singleton_fds:
            continue
        if qt_app_appeared and target.startswith("anon_inode:"):
            continue  # the new QApplication's event dispatcher
        if before.fds.get(fd) != target:
            problems.append(f"file descriptor {fd} -> {target} still open")
    for segment in sorted(after.shm_mapped - before.shm_mapped):
        problems.append(f"shared memory {segment} still mapped")
    pids = {os.getpid(), *before.processes, *after.processes}
    for name in sorted(after.shm_files - before.shm_files):
        if not _ours(name, pids):
            continue
        problems.append(f"shared memory segment {_SHM_DIR}/{name} never unlinked")
    return problems


#: Leftovers that took longer than this (s) to go are reported (see
#: ``SLOW_RELEASE``), though the test passes.
SLOW_RELEASE_AFTER = 2.0

#: The ``user_properties`` key of such a report; conftest.py prints them
#: in pytest's summary, so that a release slow enough to cost CI time is
#: named, not only timed.
SLOW_RELEASE = "slow release"


def check_no_leaks(before: Snapshot, grace: float = DEFAULT_GRACE) -> str | None:
    """Wait up to ``grace`` s for leftovers to go; fail the test if some stay.

    Returns what was still there after ``SLOW_RELEASE_AFTER`` s, if that
    went later (None if everything went sooner).
    """
    start = time.monotonic()
    deadline = start + grace
    delay = 0.001
    slow = None
    while True:
        problems = leftovers(before)
        if not problems:
            return slow
        waited = time.monotonic() - start
        if slow is None and waited > SLOW_RELEASE_AFTER:
            slow = f"still there after {waited:.1f} s: " + "; ".join(problems)
        if time.monotonic() > deadline:
            break
        # Descriptors and segments held only by garbage go with it.
        gc.collect()
        # Polling for other threads/processes to finish: back off gently.
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    pytest.fail(
        "the test left resources behind (after waiting "
        f"{grace} s for them to go):\n  " + "\n  ".join(problems),
        pytrace=False,
    )


@pytest.fixture
def no_leaks(request: pytest.FixtureRequest) -> Iterator[Snapshot]:
    """Fail the test if, after its teardown, something it started is left.

    Request it before the fixtures that make executors and contexts (or
    through ``pytest.mark.usefixtures``, which comes first) so that it checks
    after they are torn down.
    """
    gc.collect()
    before = take_snapshot()
    yield before
    slow = check_no_leaks(before)
    if slow is not None:
        request.node.user_properties.append((SLOW_RELEASE, slow))
