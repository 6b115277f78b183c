"""Longest stall of a GUI event loop while a task floods it with progress.

A task sends 100,000 ``progress`` messages as fast as it can; the main
thread runs the toolkit's loop with a 10 ms repeating timer, as a window's
repaint or input handling would need.  The longest gap between two ticks
while the messages arrive is the longest time the GUI was frozen.  The
baseline is the same timer on the same loop with no task (the loop's own
jitter), measured in the same run, interleaved with the floods.

Target (issue 5): no stall longer than 50 ms.  Also: how late the last
message is shown (its observer runs) after the task sent it, and that every
message arrived, in order.

Usage: ``python benchmarks/gui_stall.py [--toolkit qt|wx] [--context
thread|process] [--repeat R] [--quick]``.  Qt runs offscreen unless
``QT_QPA_PLATFORM`` says otherwise; wx needs a display (``xvfb-run -a``).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

from traits.api import Bool, HasStrictTraits

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _tasks  # noqa: E402
from _harness import Skip, emit, environment, open_context  # noqa: E402

#: Stall target (s).
TARGET = 0.050

#: Timer period (ms) of the main-thread ticker.
TICK_MS = 10


class Ticker:
    """A repeating main-thread timer that records when it fires."""

    def __init__(self, toolkit: str) -> None:
        self.ticks: list[float] = []
        if toolkit == "qt":
            from pyface.qt import QtCore

            self._timer = QtCore.QTimer()
            self._timer.timeout.connect(self._tick)
            self._start = lambda: self._timer.start(TICK_MS)
            self._stop = self._timer.stop
        else:
            import wx

            self._timer = wx.Timer()
            self._timer.Bind(wx.EVT_TIMER, lambda event: self._tick())
            self._start = lambda: self._timer.Start(TICK_MS)
            self._stop = self._timer.Stop

    def _tick(self) -> None:
        self.ticks.append(time.perf_counter())

    def start(self) -> None:
        self.ticks.clear()
        self._start()

    def stop(self) -> None:
        self._stop()


class _Flag(HasStrictTraits):
    """Set when the idle measurement is over, for ``run_until``."""

    done = Bool(False)


def gaps_during(ticks: list[float], start: float, end: float) -> list[float]:
    """Gaps between ticks over ``[start, end]``, counting the tick just
    before ``start`` and the first one after ``end``: a window with no tick
    at all is one long stall, not an empty list."""
    before = [t for t in ticks if t <= start][-1:]
    inside = [t for t in ticks if start < t < end]
    after = [t for t in ticks if t >= end][:1]
    points = before + inside + after
    return [b - a for a, b in zip(points, points[1:], strict=False)]


def run_loop_for(helper: Any, seconds: float, toolkit: str) -> None:
    """Run the toolkit loop for ``seconds`` (a single-shot timer ends it)."""
    flag = _Flag()
    if toolkit == "qt":
        from pyface.qt import QtCore

        QtCore.QTimer.singleShot(round(seconds * 1000), lambda: setattr(flag, "done", True))
    else:
        import wx

        wx.CallLater(round(seconds * 1000), setattr, flag, "done", True)
    helper.run_until(flag, "done", lambda f: f.done, timeout=seconds + 30)


def flood_once(
    executor: Any, helper: Any, ticker: Ticker, count: int, toolkit: str
) -> dict[str, Any]:
    """One flood of ``count`` messages; the ticker runs throughout."""
    from offload.api import submit_progress

    seen = {"expected": 0, "wrong": 0, "last_shown": 0.0}

    def observer(event: Any) -> None:
        if event.new != seen["expected"]:
            seen["wrong"] += 1
        seen["expected"] = event.new + 1
        if event.new == count - 1:
            seen["last_shown"] = time.perf_counter()

    start = time.perf_counter()
    future = submit_progress(executor, _tasks.report_progress_timed, count)
    future.observe(observer, "progress")
    helper.run_until(future, "done", lambda f: f.done, timeout=300)
    end = time.perf_counter()
    # Let the ticker fire once more after the end, to close the last gap.
    run_loop_for(helper, 3 * TICK_MS / 1000, toolkit)
    if future.state != "completed" or seen["wrong"] or seen["expected"] != count:
        raise RuntimeError(
            f"flood lost or reordered messages: {future.state}, {seen['wrong']} out of "
            f"order, last {seen['expected'] - 1} of {count}"
        )
    gaps = gaps_during(ticker.ticks, start, end)
    # The task returns when (perf_counter, one clock for all processes here)
    # it sent its last message.
    return {"max_gap": max(gaps), "gaps": gaps, "seconds": end - start,
            "last_late": seen["last_shown"] - future.result}


def idle_max_gap(helper: Any, ticker: Ticker, seconds: float, toolkit: str) -> float:
    """Longest tick gap of the idle loop over ``seconds``."""
    start = time.perf_counter()
    run_loop_for(helper, seconds, toolkit)
    end = time.perf_counter()
    run_loop_for(helper, 3 * TICK_MS / 1000, toolkit)
    return max(gaps_during(ticker.ticks, start, end))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toolkit", choices=["qt", "wx"], default="qt")
    parser.add_argument("--context", choices=["thread", "process"], default="thread")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    args = parser.parse_args()
    repeat = args.repeat or (1 if args.quick else 5)
    count = 2_000 if args.quick else args.messages
    record: dict[str, Any] = {
        "benchmark": "gui_stall",
        "toolkit": args.toolkit,
        "context": args.context,
        "messages": count,
        "repeat": repeat,
        "tick_ms": TICK_MS,
    }
    try:
        record.update(measure(args.toolkit, args.context, count, repeat))
    except Skip as skip:
        record["skipped"] = str(skip)
    record["environment"] = environment()
    emit(record)


def measure(toolkit: str, context_name: str, count: int, repeat: int) -> dict[str, Any]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        if toolkit == "qt":
            from offload._event_loops.qt import QtEventLoop as Loop
        else:
            from offload._event_loops.wx import WxEventLoop as Loop
    except ImportError as exc:
        raise Skip(f"{toolkit} not available: {exc}") from None
    from offload._routing.inbox import DEFAULT_TIME_SLICE
    from offload.api import TraitsExecutor

    event_loop = Loop()
    helper = event_loop.event_loop_helper()
    helper.init()
    ticker = Ticker(toolkit)
    floods: list[dict[str, Any]] = []
    idles: list[float] = []
    try:
        with open_context(context_name) as (context, _info):
            executor = TraitsExecutor(context=context, event_loop=event_loop)
            ticker.start()
            try:
                run_loop_for(helper, 0.2, toolkit)  # warm up
                for _ in range(repeat):
                    run = flood_once(executor, helper, ticker, count, toolkit)
                    floods.append(run)
                    idles.append(idle_max_gap(helper, ticker, run["seconds"], toolkit))
            finally:
                ticker.stop()
                executor.shutdown(timeout=60)
    finally:
        helper.dispose()
    all_gaps = sorted(g for run in floods for g in run["gaps"])
    worst = max(run["max_gap"] for run in floods)
    median_seconds = statistics.median(run["seconds"] for run in floods)
    return {
        "time_slice_ms": DEFAULT_TIME_SLICE * 1000,
        "max_stall_ms": round(worst * 1000, 1),
        "median_max_stall_ms": round(statistics.median(r["max_gap"] for r in floods) * 1000, 1),
        "p99_gap_ms": round(all_gaps[int(0.99 * (len(all_gaps) - 1))] * 1000, 1)
        if all_gaps
        else None,
        "ticks_per_flood": round(statistics.median(len(r["gaps"]) - 1 for r in floods)),
        "flood_seconds": round(median_seconds, 3),
        "messages_per_second": round(count / median_seconds),
        "last_message_late_ms_median": round(
            statistics.median(r["last_late"] for r in floods) * 1000, 2),
        "last_message_late_ms_max": round(max(r["last_late"] for r in floods) * 1000, 2),
        "baseline": "same ticker, idle loop, same duration",
        "baseline_max_stall_ms": round(max(idles) * 1000, 1),
        "target_ms": TARGET * 1000,
        "meets_target": worst <= TARGET,
    }


if __name__ == "__main__":
    main()
