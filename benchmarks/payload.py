"""Large arrays to and from worker processes: round trip and GUI stall.

round trip
    One task takes a float64 array of ``--mb`` MB and returns another of
    the same size (``numpy.negative``), time from submit to the result in
    hand on the main thread (an asyncio loop), median of the repeats.
    Baselines in the same run, interleaved: raw
    ``concurrent.futures.ProcessPoolExecutor`` (same start method, pickle
    over a pipe), and the floor, two copies of the array in this process.
    Targets (issue 32): at least 4x faster than the raw pool, within 4x of
    the floor.
stall
    A 10 ms repeating timer on the main thread (asyncio; Qt offscreen with
    ``--toolkit qt``) while three such tasks are submitted (one per timer
    callback, 30 ms apart, as three clicks would) and run: the longest gap
    between two ticks.  Target: under 50 ms.  Baseline (asyncio): the same
    timer on the idle loop for as long, interleaved.  The first run (``cold``) is
    reported apart: the shared memory it needs is new, and the first write
    to new memory costs a page fault per page.

With ``--kind bytes`` the payload is a ``bytes`` object instead, and the
task returns a copy of it (``bytes(memoryview(data))``); the floor is two
such copies in this process.

Usage: ``python benchmarks/payload.py [--mb 100] [--repeat R] [--toolkit
asyncio|qt] [--kind array|bytes] [--quick]``.  Prints one JSON line per
measurement.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import multiprocessing
import os
import statistics
import sys
import time
from typing import Any

from traits.api import Bool, HasStrictTraits

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from _harness import (  # noqa: E402
    close_loop,
    emit,
    environment,
    interleave_all,
    make_executor,
    new_loop,
    open_context,
    run_until,
    shutdown_executor,
)

#: Targets (issue 32).
RAW_SPEEDUP = 4.0
FLOOR_RATIO = 4.0
STALL_TARGET = 0.050
TICK = 0.010


def _negate(array: Any) -> Any:
    import numpy

    return numpy.negative(array)


def _copy(data: bytes) -> bytes:
    return bytes(memoryview(data))


def _task(payload: Any) -> Any:
    """The task for ``payload``: ``_negate`` an array, ``_copy`` bytes."""
    return _copy if isinstance(payload, bytes) else _negate


def _check(result: Any, payload: Any) -> None:
    if isinstance(payload, bytes):
        assert type(result) is bytes and len(result) == len(payload)
        assert result[-1:] == payload[-1:]
    else:
        assert result.shape == payload.shape and result[-1] == -payload[-1]


def offload_round_trip(executor: Any, loop: Any, array: Any) -> float:
    from offload.api import submit_call

    gc.collect()
    waiter = loop.create_future()
    start = time.perf_counter()
    future = submit_call(executor, _task(array), array)
    future.observe(lambda event: waiter.done() or waiter.set_result(None), "done")
    run_until(loop, waiter)
    elapsed = time.perf_counter() - start
    _check(future.result, array)
    return elapsed


def raw_round_trip(pool: Any, array: Any) -> float:
    gc.collect()
    start = time.perf_counter()
    result = pool.submit(_task(array), array).result()
    elapsed = time.perf_counter() - start
    _check(result, array)
    return elapsed


def floor_round_trip(array: Any) -> float:
    gc.collect()
    start = time.perf_counter()
    if isinstance(array, bytes):
        copy = _copy(array)
        result = _copy(copy)
    else:
        copy = array.copy()
        result = copy.copy()
    elapsed = time.perf_counter() - start
    del copy, result
    return elapsed


def asyncio_stall(executor: Any, loop: Any, arrays: list[Any]) -> tuple[float, float]:
    """(longest gap, seconds) of a 10 ms asyncio timer while ``arrays`` go
    through tasks submitted from a timer callback, as a GUI would."""
    from offload.api import submit_call

    ticks: list[float] = []
    waiter = loop.create_future()
    futures: list[Any] = []
    running = [True]

    def tick() -> None:
        ticks.append(time.perf_counter())
        if running[0]:
            loop.call_later(TICK, tick)

    def submit(index: int) -> None:
        # One submit per callback, three ticks apart: three clicks.
        futures.append(submit_call(executor, _task(arrays[index]), arrays[index]))
        if index + 1 < len(arrays):
            loop.call_later(3 * TICK, submit, index + 1)
        else:
            loop.call_soon(check)

    def check() -> None:
        if all(future.done for future in futures):
            waiter.set_result(None)
        else:
            loop.call_later(0.001, check)

    gc.collect()
    loop.call_soon(tick)
    loop.call_later(5 * TICK, submit, 0)
    start = time.perf_counter()
    run_until(loop, waiter)
    running[0] = False
    # One more tick closes the last gap.
    end_waiter = loop.create_future()
    loop.call_later(2 * TICK, end_waiter.set_result, None)
    run_until(loop, end_waiter)
    assert all(future.state == "completed" for future in futures), [f.state for f in futures]
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    return max(gaps), time.perf_counter() - start


class _Flag(HasStrictTraits):
    """Set once every task of a Qt stall run is done."""

    done = Bool(False)


def asyncio_idle(loop: Any, seconds: float) -> float:
    """Longest gap of the same timer on the idle loop over ``seconds``: the
    loop's own jitter (and the machine's load), the stall's baseline."""
    ticks: list[float] = []
    end = time.perf_counter() + seconds

    def tick() -> None:
        ticks.append(time.perf_counter())
        if ticks[-1] < end:
            loop.call_later(TICK, tick)

    waiter = loop.create_future()
    loop.call_soon(tick)
    loop.call_later(seconds + 2 * TICK, waiter.set_result, None)
    run_until(loop, waiter)
    return max(b - a for a, b in zip(ticks, ticks[1:], strict=False))


class QtStall:
    """A Qt loop and executor, made once: each ``run`` is one measurement."""

    def __init__(self, context: Any) -> None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from offload._event_loops.qt import QtEventLoop
        from offload.api import TraitsExecutor

        event_loop = QtEventLoop()
        self.helper = event_loop.event_loop_helper()
        self.helper.init()
        self.executor = TraitsExecutor(context=context, event_loop=event_loop)

    def run(self, arrays: list[Any]) -> float:
        """Longest gap of a 10 ms QTimer while ``arrays`` go through tasks."""
        from pyface.qt import QtCore

        from offload.api import submit_call

        ticks: list[float] = []
        timer = QtCore.QTimer()
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        futures: list[Any] = []
        flag = _Flag()

        def on_done(event: Any) -> None:
            flag.done = len(futures) == len(arrays) and all(f.done for f in futures)

        def submit(array: Any) -> None:
            future = submit_call(self.executor, _task(array), array)
            futures.append(future)
            future.observe(on_done, "done")

        # As in asyncio_stall: the last run's futures (in a cycle through
        # their observer) and the results they hold go now, not in a full
        # collection later; else each run holds 600 MB more of shared
        # memory, and this VM's untouched memory costs 7x to fault in.
        gc.collect()
        timer.start(round(TICK * 1000))
        for index, array in enumerate(arrays):
            # One submit per callback, three ticks apart: three clicks.
            QtCore.QTimer.singleShot(
                round(3 * TICK * 1000) * (index + 1), lambda array=array: submit(array)
            )
        self.helper.run_until(flag, "done", lambda f: f.done, timeout=300)
        timer.stop()
        assert all(future.state == "completed" for future in futures)
        gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
        return max(gaps)

    def close(self) -> None:
        self.executor.shutdown(timeout=60)
        self.helper.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0)
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--toolkit", choices=["asyncio", "qt"], default="asyncio")
    parser.add_argument("--kind", choices=["array", "bytes"], default="array")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    args = parser.parse_args()
    repeat = args.repeat or (1 if args.quick else 5)
    megabytes = 2.0 if args.quick else args.mb
    import cloudpickle
    import numpy

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    array: Any = numpy.random.default_rng(0).random(int(megabytes * 1e6 / 8))
    if args.kind == "bytes":
        array = array.tobytes()
    with open_context("process") as (context, parts):
        start_method = parts["start_method"]
        loop = new_loop()
        executor = make_executor(context, loop)
        raw = concurrent.futures.ProcessPoolExecutor(
            mp_context=multiprocessing.get_context(start_method)
        )
        try:
            # Warm up: workers started, modules imported.
            for _ in range(2):
                offload_round_trip(executor, loop, array[:1000])
                raw_round_trip(raw, array[:1000])
            offload_runs, raw_runs, floor_runs = interleave_all(repeat, [
                lambda: offload_round_trip(executor, loop, array),
                lambda: raw_round_trip(raw, array),
                lambda: floor_round_trip(array),
            ])
            median = statistics.median(offload_runs)
            raw_median = statistics.median(raw_runs)
            floor_median = statistics.median(floor_runs)
            emit({
                "benchmark": "payload_round_trip",
                "context": "process",
                "start_method": start_method,
                "megabytes": megabytes,
                "kind": args.kind,
                "unit": "s",
                "median": median,
                "raw_median": raw_median,
                "floor_median": floor_median,
                "raw_speedup": raw_median / median,
                "floor_ratio": median / floor_median,
                "met": raw_median / median >= RAW_SPEEDUP
                and median / floor_median <= FLOOR_RATIO,
                "runs": offload_runs,
                "raw_runs": raw_runs,
                "floor_runs": floor_runs,
                "repeat": repeat,
                "quick": args.quick,
                **environment(),
            })
            arrays = [_copy(array) if args.kind == "bytes" else array.copy() for _ in range(3)]
            stalls = []
            idles = []
            # The first run is cold: the application's shared memory for
            # three tasks at once is new (page faults); reported apart.
            qt = QtStall(context) if args.toolkit == "qt" else None
            for _ in range(repeat + 1):
                if qt is not None:
                    stalls.append(qt.run(arrays))
                else:
                    stall, seconds = asyncio_stall(executor, loop, arrays)
                    stalls.append(stall)
                    idles.append(asyncio_idle(loop, seconds))
            if qt is not None:
                qt.close()
            cold, stalls = stalls[0], stalls[1:]
            emit({
                "benchmark": "payload_stall",
                "context": "process",
                "toolkit": args.toolkit,
                "start_method": start_method,
                "megabytes": megabytes,
                "kind": args.kind,
                "tasks": len(arrays),
                "unit": "s",
                "median": statistics.median(stalls),
                "max": max(stalls),
                "cold": cold,
                "idle_median": statistics.median(idles) if idles else None,
                "idle_runs": idles,
                "target": STALL_TARGET,
                "met": max(stalls) < STALL_TARGET,
                "runs": stalls,
                "repeat": repeat,
                "quick": args.quick,
                **environment(),
            })
        finally:
            raw.shutdown()
            shutdown_executor(executor)
            close_loop(loop)


if __name__ == "__main__":
    main()
