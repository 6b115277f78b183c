"""QtEventLoop and WxEventLoop: pingees, test helpers, and responsiveness.

Each test runs on every GUI loop available here ("qt" offscreen, "wx" under
Xvfb) and skips the others.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from traits.api import Event, HasStrictTraits, Int, List

from conftest import EVENT_LOOPS, load
from offload.api import MultithreadingContext, TraitsExecutor, submit_call, submit_progress
from offload.testing import TestAssistant

pytestmark = pytest.mark.gui

GUI_LOOPS = ["qt", "wx"]


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


@pytest.fixture
def helper(gui_loop: Any) -> Iterator[Any]:
    helper = gui_loop.event_loop_helper()
    helper.init()
    yield helper
    helper.dispose()


def ping_from_threads(pingee: Any, threads: int, each: int) -> None:
    def work() -> None:
        for _ in range(each):
            pingee.ping()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=20)
        assert not worker.is_alive()


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


def flood(count: int, progress: Any) -> int:
    for i in range(count):
        progress(i)
    return count


def test_gui_keeps_breathing_during_a_message_flood(gui_loop, helper):
    """A task sending 100,000 progress messages must not freeze the loop.

    A main-thread timer ticks every 10 ms during the flood; the longest gap
    between ticks is the longest stall.  The bound here is loose (shared CI
    machines); ``benchmarks/gui_stall.py`` measures it properly.
    """
    context = MultithreadingContext()
    executor = TraitsExecutor(context=context, event_loop=gui_loop)
    ticks: list[float] = []
    received = Counter()
    stop_ticking = _start_ticker(gui_loop, ticks)
    try:
        future = submit_progress(executor, flood, 100_000)
        future.observe(lambda event: setattr(received, "value", event.new), "progress")
        helper.run_until(future, "done", lambda f: f.done, timeout=40)
        assert future.result == 100_000 and received.value == 99_999
    finally:
        stop_ticking()
        executor.shutdown(timeout=10)
        context.close()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) > 5
    assert max(gaps) < 0.5, f"longest stall {max(gaps) * 1000:.0f} ms"


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
