"""QtEventLoop, WxEventLoop and ETSEventLoop.

The GUI tests (marked ``gui``) run on every GUI loop available here ("qt"
offscreen, "wx" under Xvfb) and skip the others.  The toolkit-selection and
missing-toolkit tests need no toolkit: they block imports in a subprocess.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from traits.api import Event, HasStrictTraits, Int, List

import conftest
from conftest import EVENT_LOOPS, load, ping_from_threads
from offload.api import MultithreadingContext, TraitsExecutor, submit_call, submit_progress
from offload.testing import TestAssistant

#: The GUI loops, each marked ``gui``; a test that takes one is a GUI test.
GUI_LOOPS = [pytest.param(kind, marks=pytest.mark.gui) for kind in ["qt", "wx"]]

#: The first application a process makes opens descriptors (the X11
#: connection, an eventfd) that it keeps on purpose until exit; the suite's
#: leak check, where there is one, must not blame that on a test.
_KEEPS_APP = (
    pytest.mark.leaks_ok("makes the process-wide GUI application, kept until exit")
    if hasattr(conftest, "_check_leaks")
    else pytest.mark.gui  # (no leak check: nothing to exempt)
)


class Counter(HasStrictTraits):
    #: Number of ``on_ping`` calls seen.
    count = Int(0)
    #: Thread idents the calls ran on.
    threads = List(Int)
    value = Int(0)
    fired = Event()

    def on_ping(self) -> None:
        self.threads.append(threading.get_ident())
        self.count += 1


@pytest.fixture(params=GUI_LOOPS)
def gui_loop(request: pytest.FixtureRequest) -> Any:
    return load(EVENT_LOOPS, request.param)()


@_KEEPS_APP
@pytest.mark.parametrize("kind", GUI_LOOPS)
def test_application_is_made_once_and_kept(kind):
    # The first test of this module (and nox runs this module first), so the
    # application exists before any test whose leak check would see it made.
    load(EVENT_LOOPS, kind)  # skips when the toolkit is missing
    module = importlib.import_module(EVENT_LOOPS[kind][0])
    first = module._application()
    assert module._application() is first


@pytest.fixture
def helper(gui_loop: Any) -> Iterator[Any]:
    helper = gui_loop.event_loop_helper()
    helper.init()
    yield helper
    helper.dispose()


def test_every_ping_calls_back_once_on_main_thread(gui_loop, helper):
    counter = Counter()
    pingee = gui_loop.pingee(counter.on_ping)
    pingee.connect()
    try:
        ping_from_threads(pingee, threads=4, each=250)
        helper.run_until(counter, "count", lambda c: c.count == 1000, timeout=20)
    finally:
        pingee.disconnect()
    assert set(counter.threads) == {threading.get_ident()}


def test_pings_before_connect_and_after_disconnect_do_nothing(gui_loop, helper):
    counter = Counter()
    pingee = gui_loop.pingee(counter.on_ping)
    pingee.ping()  # not connected yet
    pingee.connect()
    ping_from_threads(pingee, threads=2, each=10)
    # Pings sent but not yet delivered are dropped by disconnect.
    pingee.disconnect()
    ping_from_threads(pingee, threads=2, each=10)
    sentinel = Counter()
    helper.setattr_soon(sentinel, "value", 1)
    helper.run_until(sentinel, "value", lambda s: s.value == 1, timeout=10)
    assert counter.count == 0


def test_a_pingee_dropped_on_a_worker_thread_leaves_its_waker_to_the_next(gui_loop, helper):
    # A waker is a toolkit object (a QObject with a timer, a wx handler):
    # destroying it off the main thread (where a pingee's last reference,
    # or a garbage collection, may go) corrupts the toolkit's loop.  It
    # must outlive its pingee, idle, and serve the next one.
    from offload._event_loops.gui_base import _IDLE_WAKERS

    counter = Counter()
    pingee = gui_loop.pingee(counter.on_ping)
    waker = pingee._waker
    holder = [pingee]
    del pingee
    dropper = threading.Thread(target=holder.clear)  # the last reference goes there
    dropper.start()
    dropper.join(10)
    idle = list(_IDLE_WAKERS.get(type(waker), []))
    assert any(kept is waker for kept in idle)  # kept, not destroyed
    following = Counter()
    pingee = gui_loop.pingee(following.on_ping)
    # Reused (an idle one: another test's pingee may have gone meanwhile).
    assert any(kept is pingee._waker for kept in idle)
    pingee.connect()
    try:
        ping_from_threads(pingee, threads=2, each=5)
        helper.run_until(following, "count", lambda c: c.count == 10, timeout=20)
    finally:
        pingee.disconnect()
    assert counter.count == 0


def test_a_helper_used_before_init_says_so(gui_loop):
    helper = gui_loop.event_loop_helper()
    toolkit = type(gui_loop).__name__.removesuffix("EventLoop")
    counter = Counter()
    with pytest.raises(RuntimeError, match=rf"(?i)call init\(\) on the {toolkit} event loop helper"):
        helper.setattr_soon(counter, "value", 1)
    with pytest.raises(RuntimeError, match="call init"):
        helper.run_until(counter, "value", lambda c: True, timeout=1)
    helper.dispose()  # harmless before init
    assert counter.value == 0


def test_run_until_returns_at_once_when_condition_holds(helper):
    counter = Counter(value=3)
    start = time.monotonic()
    helper.run_until(counter, "value", lambda c: c.value == 3, timeout=10)
    assert time.monotonic() - start < 1.0


def test_run_until_wakes_on_trait_change_from_a_thread(helper):
    counter = Counter()
    setter = threading.Thread(target=helper.setattr_soon, args=(counter, "value", 7))
    setter.start()
    setter.join(timeout=10)
    start = time.monotonic()
    helper.run_until(counter, "value", lambda c: c.value == 7, timeout=10)
    assert counter.value == 7
    assert time.monotonic() - start < 5.0


def test_run_until_times_out_with_clear_error(helper):
    counter = Counter()
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"timed out after 0.3 seconds.*'value'"):
        helper.run_until(counter, "value", lambda c: c.value == 1, timeout=0.3)
    elapsed = time.monotonic() - start
    assert 0.25 <= elapsed < 3.0


def test_run_until_sees_condition_on_other_state(helper):
    # The condition reads a plain attribute, not the watched trait: the
    # helper's periodic re-check must still notice it.
    box: dict[str, bool] = {"ready": False}
    flipper = threading.Thread(target=box.__setitem__, args=("ready", True))
    flipper.start()
    flipper.join(timeout=10)
    helper.run_until(Counter(), "value", lambda c: box["ready"], timeout=5)


def test_helpers_share_the_application(gui_loop):
    first = gui_loop.event_loop_helper()
    second = gui_loop.event_loop_helper()
    first.init()
    second.init()
    try:
        assert first._app is second._app
    finally:
        second.dispose()
        first.dispose()


def test_test_assistant_mixin_on_gui_loop(gui_loop):
    # The unittest mixin, with event_loop_factory overridden as users do.
    class Case(TestAssistant):
        def event_loop_factory(self) -> Any:
            return gui_loop

    case = Case()
    case.setUp()
    try:
        executor = TraitsExecutor(event_loop=case._event_loop)
        try:
            future = submit_call(executor, pow, 3, 4)
            case.run_until(future, "done", lambda f: f.done)
            assert future.result == 81
            case.exercise_event_loop()
        finally:
            executor.shutdown(timeout=10)
    finally:
        case.tearDown()


@pytest.fixture(params=GUI_LOOPS)
def offload_event_loop(request: pytest.FixtureRequest) -> Any:
    # What a user's conftest.py does to run offload's fixtures on a GUI loop.
    return load(EVENT_LOOPS, request.param)()


def test_pytest_fixtures_on_gui_loop(offload_assistant, traits_executor):
    future = submit_progress(traits_executor, flood, 500)
    offload_assistant.run_until(future, "done", lambda f: f.done, timeout=20)
    assert future.result == 500
    offload_assistant.exercise_event_loop()


def flood(count: int, progress: Any) -> int:
    for i in range(count):
        progress(i)
    return count


def flood_then_signal(count: int, sent: threading.Event, progress: Any) -> int:
    """Send ``count`` progress messages, then set ``sent`` (threads only)."""
    for i in range(count):
        progress(i)
    sent.set()
    return count


def test_gui_keeps_breathing_during_a_message_flood(gui_loop, helper):
    """100,000 progress messages waiting at once must not freeze the loop.

    The task sends them all before the loop runs; then a main-thread timer
    ticking every 10 ms must tick while they are delivered, not only once
    they all are (delivering the backlog in one go would show no tick
    between the first message and the last).  No wall-clock bound: on a
    loaded machine delivery lasts longer and the test sees more ticks, not
    fewer.  ``benchmarks/gui_stall.py`` measures the longest stall.
    """
    context = MultithreadingContext()
    executor = TraitsExecutor(context=context, event_loop=gui_loop)
    ticks: list[float] = []
    first_and_last: list[float] = []

    def on_progress(event: Any) -> None:
        if event.new == 0 or event.new == 99_999:
            first_and_last.append(time.perf_counter())

    stop_ticking = _start_ticker(gui_loop, ticks)
    try:
        sent = threading.Event()
        future = submit_progress(executor, flood_then_signal, 100_000, sent)
        future.observe(on_progress, "progress")
        assert sent.wait(timeout=30), "the task never finished sending"
        helper.run_until(future, "done", lambda f: f.done, timeout=40)
        assert future.result == 100_000 and len(first_and_last) == 2
    finally:
        stop_ticking()
        executor.shutdown(timeout=10)
        context.close()
    first, last = first_and_last
    during = [tick for tick in ticks if first < tick < last]
    assert len(during) >= 2, (
        f"the loop ticked {len(during)} time(s) in {1000 * (last - first):.0f} ms "
        "of delivery"
    )


def test_observer_running_a_nested_loop_is_not_re_entered(gui_loop, helper):
    """An observer that runs pending events (as pyface's ProgressDialog.update
    does, behind TraitsUI's ProgressEditor) must not get a delivery inside
    its own delivery (wx hands the wake posted meanwhile to the nested loop:
    without the guard, deliveries nest, and with a flood they recurse)."""
    context = MultithreadingContext()
    executor = TraitsExecutor(context=context, event_loop=gui_loop)
    run_pending_events = _pending_events_runner(gui_loop)
    seen: list[int] = []
    depth = [0, 0]  # current, deepest

    def on_progress(event: Any) -> None:
        depth[0] += 1
        depth[1] = max(depth)
        seen.append(event.new)
        # A slow repaint: keep handling events for a few ms, long enough for
        # the task's next message (and its wake) to arrive meanwhile.
        until = time.perf_counter() + 0.015
        while time.perf_counter() < until:
            run_pending_events()
        depth[0] -= 1

    try:
        future = submit_progress(executor, trickle, 40)
        future.observe(on_progress, "progress")
        helper.run_until(future, "done", lambda f: f.done, timeout=40)
    finally:
        executor.shutdown(timeout=10)
        context.close()
    assert future.result == 40
    assert seen == list(range(40))
    assert depth[1] == 1


def trickle(count: int, progress: Any) -> int:
    """Send ``count`` messages, one per millisecond or so."""
    for i in range(count):
        progress(i)
        time.sleep(0.001)
    return count


def _pending_events_runner(gui_loop: Any) -> Any:
    """A function that handles the toolkit's pending events, then returns."""
    if type(gui_loop).__name__ == "QtEventLoop":
        from pyface.qt import QtCore

        return QtCore.QCoreApplication.processEvents
    import wx

    return lambda: wx.GetApp().Yield(True)


def _start_ticker(gui_loop: Any, ticks: list[float]) -> Any:
    """Record a timestamp every 10 ms on the main thread; return a stopper."""
    name = type(gui_loop).__name__
    if name == "QtEventLoop":
        from pyface.qt import QtCore

        timer = QtCore.QTimer()
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start(10)
        return timer.stop
    import wx

    wx_timer = wx.Timer()
    wx_timer.Bind(wx.EVT_TIMER, lambda event: ticks.append(time.perf_counter()))
    wx_timer.Start(10)
    return wx_timer.Stop


@pytest.mark.parametrize("kind", GUI_LOOPS)
def test_ping_is_harmless_once_the_application_is_gone(kind):
    # In a fresh process: make the application, connect a pingee, destroy
    # the application, then ping from a thread.  Nothing may crash or raise.
    module_name, class_name = EVENT_LOOPS[kind]
    load(EVENT_LOOPS, kind)  # skip when the toolkit is missing
    code = textwrap.dedent(
        f"""
        import gc, threading
        from {module_name} import {class_name}, _application, _KEEP_ALIVE
        loop = {class_name}()
        app = _application()
        pingee = loop.pingee(lambda: None)
        pingee.connect()
        pingee.ping()
        if "{kind}" == "wx":
            app.Destroy()
        else:
            app.shutdown() if hasattr(app, "shutdown") else None
        _KEEP_ALIVE.clear()
        del app
        gc.collect()
        worker = threading.Thread(target=pingee.ping)
        worker.start()
        worker.join(10)
        pingee.disconnect()
        pingee.ping()
        print("survived")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "survived" in result.stdout


# ETSEventLoop: choosing the toolkit, and what a missing one says ------------


def run_python(code: str, *, block: tuple[str, ...] = (), env: dict[str, str] | None = None) -> str:
    """Run ``code`` in a fresh interpreter with the modules ``block`` made
    unimportable and ``ETS_TOOLKIT`` unset unless ``env`` sets it; return
    its output, failing on a non-zero exit.  ``code`` may call
    ``report(attempt)``, which prints the error ``attempt()`` raises."""
    prelude = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in block)
    prelude += _REPORT
    full_env = {k: v for k, v in os.environ.items() if k != "ETS_TOOLKIT"}
    full_env.setdefault("QT_QPA_PLATFORM", "offscreen")
    full_env.update(env or {})
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True, text=True, timeout=60, env=full_env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


#: Print the message of the error that ``attempt()`` raises, or fail.
_REPORT = """
def report(attempt):
    try:
        attempt()
    except Exception as error:
        print(type(error).__name__ + ": " + str(error))
    else:
        raise SystemExit("no error raised")
"""

NO_TOOLKIT = ("pyface", "wx")


def test_no_toolkit_at_all_names_the_extra_and_the_asyncio_way():
    out = run_python(
        """
        from offload.api import ETSEventLoop, TraitsExecutor
        report(ETSEventLoop)
        report(TraitsExecutor)
        """,
        block=NO_TOOLKIT,
    )
    first, second = out.splitlines()
    for line in (first, second):
        assert line.startswith("RuntimeError: no GUI toolkit found")
        assert "pip install 'offload[pyside6]'" in line
        assert "'offload[wx]'" in line and "python3-wxgtk4.0" in line
        assert "event_loop=AsyncioEventLoop()" in line


def test_qt_and_wx_loops_used_directly_name_their_extra():
    out = run_python(
        """
        import offload.api
        report(offload.api.QtEventLoop)
        report(offload.api.WxEventLoop)
        report(lambda: __import__("offload._event_loops.qt"))
        """,
        block=NO_TOOLKIT,
    )
    qt, wx, module = out.splitlines()
    import_errors = ("ImportError", "ModuleNotFoundError")
    assert qt.split(":")[0] in import_errors and "pip install 'offload[pyside6]'" in qt
    assert "'offload[pyqt5]'" in qt
    assert wx.split(":")[0] in import_errors and "python3-wxgtk4.0" in wx
    assert "--system-site-packages" in wx and "pip install 'offload[wx]'" in wx
    # A missing module stays a ModuleNotFoundError (pytest.importorskip skips).
    assert module.startswith("ModuleNotFoundError: ")
    assert "pip install 'offload[pyside6]'" in module
    # pyface present but no Qt binding at all says the same.
    out = run_python(
        "from offload.api import QtEventLoop\nreport(QtEventLoop)\n",
        block=("PySide6", "PySide2", "PyQt5", "PyQt6"),
        env={"QT_API": ""},
    )
    assert "pip install 'offload[pyside6]'" in out


@pytest.mark.parametrize(
    ("toolkit", "extra"), [("qt", "offload[pyside6]"), ("qt4.celiagg", "offload[pyside6]"),
                           ("wx", "offload[wx]")],
)
def test_chosen_toolkit_missing_says_who_chose_it_and_what_to_install(toolkit, extra):
    out = run_python(
        "from offload.api import ETSEventLoop\nreport(ETSEventLoop)\n",
        block=NO_TOOLKIT, env={"ETS_TOOLKIT": toolkit},
    )
    name = toolkit.split(".")[0][:2]
    assert out.startswith(f"RuntimeError: the toolkit '{name}' chosen by ETS_TOOLKIT")
    assert f"pip install '{extra}'" in out


def test_null_and_unknown_toolkits_are_explained():
    code = "from offload.api import ETSEventLoop\nreport(ETSEventLoop)\n"
    null = run_python(code, env={"ETS_TOOLKIT": "null"})
    assert "is 'null', which has no event loop" in null
    assert "event_loop=AsyncioEventLoop()" in null
    unknown = run_python(code, env={"ETS_TOOLKIT": "nosuchkit"})
    assert "'nosuchkit' chosen by ETS_TOOLKIT" in unknown
    assert "has no offload event loop" in unknown
    assert "known toolkits: qt, wx" in unknown and "'offload.event_loops'" in unknown


def test_toolkit_argument_is_named_in_the_error():
    from offload.api import ETSEventLoop

    with pytest.raises(RuntimeError, match=r"ETSEventLoop\(toolkit='nosuchkit'\)"):
        ETSEventLoop(toolkit="nosuchkit")


def _plug_in(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """Pretend installed packages registered these ``name=value`` loops."""
    from importlib.metadata import EntryPoint

    from offload._event_loops import ets

    points = {
        name: EntryPoint(name=name, value=value, group=ets.ENTRY_POINT_GROUP)
        for name, value in values.items()
    }
    monkeypatch.setattr(ets, "_entry_points", lambda: points)


ASYNCIO_LOOP = "offload._event_loops.asyncio_loop:AsyncioEventLoop"


def test_third_party_loop_from_an_entry_point_runs_tasks(monkeypatch):
    from offload.api import AsyncioEventLoop, ETSEventLoop
    from offload.testing.pytest_plugin import OffloadAssistant

    _plug_in(monkeypatch, mytoolkit=ASYNCIO_LOOP)
    loop = ETSEventLoop(toolkit="mytoolkit")
    assert isinstance(loop.toolkit_event_loop, AsyncioEventLoop)
    assistant = OffloadAssistant(loop)
    executor = TraitsExecutor(event_loop=loop)
    try:
        future = submit_call(executor, pow, 2, 10)
        assistant.run_until(future, "done", lambda f: f.done, timeout=10)
        assert future.result == 1024
    finally:
        executor.shutdown(timeout=10)
        assistant.dispose()
        loop.toolkit_event_loop.close()


def test_broken_plug_ins_are_not_mistaken_for_missing_toolkits(monkeypatch):
    from offload.api import ETSEventLoop

    _plug_in(
        monkeypatch,
        absent="offload_no_such_package.loop:Loop",
        broken="offload._event_loops.ets:NoSuchLoop",
    )
    with pytest.raises(RuntimeError, match="'absent' .* cannot be used.*install the package"):
        ETSEventLoop(toolkit="absent")
    with pytest.raises(RuntimeError, match="entry point 'offload._event_loops.ets:NoSuchLoop'.*failed to load"):
        ETSEventLoop(toolkit="broken")


def test_third_party_loop_is_found_after_qt_and_wx_and_recorded():
    out = run_python(
        f"""
        from importlib.metadata import EntryPoint
        from traits.etsconfig.api import ETSConfig
        from offload._event_loops import ets
        point = EntryPoint(name="mytoolkit", value={ASYNCIO_LOOP!r}, group=ets.ENTRY_POINT_GROUP)
        ets._entry_points = lambda: {{"mytoolkit": point}}
        loop = ets.ETSEventLoop()
        print(type(loop.toolkit_event_loop).__name__, ETSConfig.toolkit)
        """,
        block=NO_TOOLKIT,
    )
    assert out.split() == ["AsyncioEventLoop", "mytoolkit"]


@pytest.mark.gui
def test_qt_is_chosen_first_and_recorded_for_traitsui():
    load(EVENT_LOOPS, "qt")
    out = run_python(
        """
        from traits.etsconfig.api import ETSConfig
        from offload.api import TraitsExecutor
        executor = TraitsExecutor()
        print(type(executor._event_loop.toolkit_event_loop).__name__, ETSConfig.toolkit)
        executor.shutdown(timeout=10)
        """
    )
    assert out.split() == ["QtEventLoop", "qt"]


@pytest.mark.gui
def test_default_executor_delivers_on_the_chosen_toolkit():
    # TraitsExecutor() with nothing set, end to end: the loop ETSEventLoop
    # picks is the one the results arrive on.  wx (under Xvfb) when Qt is
    # not installed, else Qt (offscreen).
    try:
        load(EVENT_LOOPS, "qt")
        expected, block = "QtEventLoop", ()
    except pytest.skip.Exception:
        load(EVENT_LOOPS, "wx")
        expected, block = "WxEventLoop", ("pyface.qt",)
    out = run_python(
        """
        from offload.api import TraitsExecutor, submit_call
        from offload.testing.pytest_plugin import OffloadAssistant
        executor = TraitsExecutor()
        assistant = OffloadAssistant(executor._event_loop)
        future = submit_call(executor, pow, 3, 3)
        assistant.run_until(future, "done", lambda f: f.done, timeout=20)
        print(type(executor._event_loop.toolkit_event_loop).__name__, future.result)
        executor.shutdown(timeout=10)
        assistant.dispose()
        """,
        block=block,
    )
    assert out.split() == [expected, "27"]


@pytest.mark.gui
def test_wx_is_chosen_when_qt_is_missing():
    load(EVENT_LOOPS, "wx")
    out = run_python(
        """
        from traits.etsconfig.api import ETSConfig
        from offload.api import ETSEventLoop
        print(type(ETSEventLoop().toolkit_event_loop).__name__, ETSConfig.toolkit)
        """,
        block=("pyface.qt",),
    )
    assert out.split() == ["WxEventLoop", "wx"]
