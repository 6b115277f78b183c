"""The test matrix: every behaviour suite runs on every context x event loop.

A context or event loop that is not available here (toolkit or package
missing, or not built yet) makes its tests skip, never fail.

Fixtures
--------
context_kind / loop_kind
    The names being tested ("thread", "process", "dask"; "asyncio", "qt",
    "wx").
context
    A fresh context of ``context_kind``, closed afterwards.
assistant
    An ``OffloadAssistant`` driving a fresh event loop of ``loop_kind``.
executor
    A ``TraitsExecutor`` on both, shut down afterwards.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from leak_check import SLOW_RELEASE, no_leaks  # noqa: F401  (the fixture, used below)
from offload.testing.pytest_plugin import OffloadAssistant

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

#: name -> (module, class) of each context under test.
CONTEXTS = {
    "thread": ("offload._backends.thread.context", "MultithreadingContext"),
    "process": ("offload._backends.process.context", "MultiprocessingContext"),
    "dask": ("offload._backends.dask.context", "DaskContext"),
}

#: name -> (module, class) of each event loop under test.
EVENT_LOOPS = {
    "asyncio": ("offload._event_loops.asyncio_loop", "AsyncioEventLoop"),
    "qt": ("offload._event_loops.qt", "QtEventLoop"),
    "wx": ("offload._event_loops.wx", "WxEventLoop"),
}

#: The (context, loop) pairs the shared suites run on: every context on
#: asyncio, every loop on threads, and processes on Qt.
MATRIX = [
    ("thread", "asyncio"),
    ("process", "asyncio"),
    ("dask", "asyncio"),
    ("thread", "qt"),
    ("thread", "wx"),
    ("process", "qt"),
]

_MARKS = {"process": [pytest.mark.process], "dask": [pytest.mark.dask],
          "qt": [pytest.mark.gui], "wx": [pytest.mark.gui]}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "leaks_ok(reason): this test may leave threads, processes, descriptors "
        "or shared memory behind (say why); the leak check skips it",
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Name the tests whose leftovers were slow to go (see leak_check)."""
    lines = [
        f"{report.nodeid}: {value}"
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "teardown"
        for key, value in getattr(report, "user_properties", ())
        if key == SLOW_RELEASE
    ]
    if lines:
        terminalreporter.section("leftovers slow to go (the leak checks passed)")
        for line in lines:
            terminalreporter.line(line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the long ``stress`` tests out unless ``-m`` selects tests.

    ``pytest`` alone runs everything else; ``pytest -m stress`` runs the
    long versions (and CI's ``-m "not stress"`` keeps them out either way).
    """
    if config.option.markexpr:
        return
    kept, left_out = [], []
    for item in items:
        (left_out if item.get_closest_marker("stress") else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


@pytest.fixture(autouse=True)
def _check_leaks(request: pytest.FixtureRequest) -> None:
    """Every test: fail it if it leaves a thread, process, fd or shm segment.

    Autouse, so it is set up before (and torn down after) the fixtures that
    make contexts, event loops and executors: it sees what their teardown
    failed to release.
    """
    if _matrix_context(request) == "dask":
        # Before the snapshot: the shared cluster outlives the test.
        request.getfixturevalue("shared_dask_cluster")
    if request.node.get_closest_marker("leaks_ok") is None:
        request.getfixturevalue("no_leaks")


def _matrix_context(request: pytest.FixtureRequest) -> str | None:
    """The context kind of a matrix test (or of a fixture ``context``
    parametrised by kind), or None for other tests."""
    callspec = getattr(request.node, "callspec", None)
    params = getattr(callspec, "params", {})
    matrix = params.get("matrix")
    if matrix:
        return matrix[0]
    # A test's own fixture parametrised by context kind, named "context".
    kind = params.get("context")
    return kind if isinstance(kind, str) else None


@pytest.fixture(scope="session")
def shared_dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The scheduler address of one cluster for the matrix's Dask tests:
    starting a cluster per test cost seconds each.  Each test still gets its
    own ``DaskContext`` (its own client, topics and cancel flags).  The
    cluster runs in processes of its own, so that what it keeps open is not
    in the test process, where the leak check looks."""
    load(CONTEXTS, "dask")  # skips without Dask
    from dask_cluster import Cluster

    cluster = Cluster(str(tmp_path_factory.mktemp("dask-cluster")))
    try:
        import distributed

        with distributed.Client(cluster.address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        yield cluster.address
    finally:
        cluster.stop()


def load(table: dict[str, tuple[str, str]], name: str) -> Callable[..., Any]:
    """Import the class named ``name`` in ``table``, or skip the test."""
    module_name, class_name = table[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        pytest.skip(f"{name} not available here: {exc}")
    return getattr(module, class_name)


def _matrix_params() -> list[Any]:
    return [
        pytest.param(
            (context, loop), id=f"{context}-{loop}",
            marks=_MARKS.get(context, []) + _MARKS.get(loop, []),
        )
        for context, loop in MATRIX
    ]


@pytest.fixture(params=_matrix_params())
def matrix(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param


@pytest.fixture
def context_kind(matrix: tuple[str, str]) -> str:
    return matrix[0]


@pytest.fixture
def loop_kind(matrix: tuple[str, str]) -> str:
    return matrix[1]


@pytest.fixture
def context(context_kind: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    if context_kind == "dask":
        address = request.getfixturevalue("shared_dask_cluster")
        context = load(CONTEXTS, context_kind)(address=address)
    else:
        context = load(CONTEXTS, context_kind)()
    yield context
    context.close()


@pytest.fixture
def event_loop(loop_kind: str) -> Iterator[Any]:
    event_loop = load(EVENT_LOOPS, loop_kind)()
    yield event_loop
    close = getattr(event_loop, "close", None)
    if close is not None:
        close()


@pytest.fixture
def assistant(event_loop: Any) -> Iterator[OffloadAssistant]:
    assistant = OffloadAssistant(event_loop)
    yield assistant
    assistant.dispose()


@pytest.fixture
def executor(context: Any, assistant: OffloadAssistant) -> Iterator[Any]:
    from offload.api import TraitsExecutor

    executor = TraitsExecutor(context=context, event_loop=assistant.event_loop)
    yield executor
    executor.shutdown(timeout=20)


@pytest.fixture
def make_executor(context: Any, assistant: OffloadAssistant) -> Iterator[Callable[..., Any]]:
    """``make_executor(**kwargs)``: more executors on the test's context and loop."""
    from offload.api import TraitsExecutor

    made: list[Any] = []

    def make(**kwargs: Any) -> Any:
        executor = TraitsExecutor(
            context=context, event_loop=assistant.event_loop, **kwargs
        )
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.shutdown(timeout=20)


def ping_from_threads(pingee: Any, threads: int, each: int) -> None:
    """Call ``pingee.ping()`` ``each`` times from each of ``threads`` threads."""

    def work() -> None:
        for _ in range(each):
            pingee.ping()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=20)
        assert not worker.is_alive()


def wait_done(assistant: OffloadAssistant, future: Any, timeout: float = 20) -> None:
    """Run the loop until ``future`` is done."""
    assistant.run_until(future, "done", lambda f: f.done, timeout=timeout)


def wait_file(assistant: OffloadAssistant, path: Any, timeout: float = 20) -> None:
    """Run the loop until ``path`` exists (written by a task)."""
    import time

    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} never appeared")
        assistant.exercise_event_loop()


class StateRecorder:
    """Records every change of ``state``, ``done`` and ``cancellable``."""

    def __init__(self, future: Any) -> None:
        self.future = future
        self.states = [future.state]
        self.changes: list[tuple[str, Any, Any]] = []
        future.observe(self._record, "state,done,cancellable")

    def _record(self, event: Any) -> None:
        if event.name == "state":
            self.states.append(event.new)
        # done/cancellable must agree with state whenever they are notified.
        self.changes.append((event.name, event.old, event.new))
        assert self.future.done == (self.future.state in ("completed", "failed", "cancelled"))
        assert self.future.cancellable == (self.future.state in ("waiting", "executing"))
