"""Functions that run in the workers (threads, processes, Dask workers).

They live in their own small module so that both the standard pickle (raw
``ProcessPoolExecutor`` baselines, by reference) and cloudpickle (offload's
process and Dask contexts, registered by value) can carry them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


def noop() -> None:
    """The trivial task."""


def report_progress(count: int, progress: Callable[[Any], None]) -> int:
    """Report ``0 .. count-1`` through ``progress``; for ``submit_progress``."""
    for i in range(count):
        progress(i)
    return count


def generate(count: int) -> Iterator[int]:
    """Yield ``0 .. count-1``; for ``submit_iteration``."""
    yield from range(count)


# Raw process baseline: a plain multiprocessing queue, inherited by workers.

_queue: Any = None


def init_queue(queue: Any) -> None:
    """``ProcessPoolExecutor`` initializer: keep the queue for the tasks."""
    global _queue
    _queue = queue


def queue_messages(index: int, count: int) -> int:
    """Put ``(index, 0) .. (index, count-1)`` on the inherited queue."""
    put = _queue.put
    for i in range(count):
        put((index, i))
    return count


def report_progress_timed(count: int, progress: Callable[[Any], None]) -> float:
    """Like :func:`report_progress`; returns when (``perf_counter``) the
    last message was sent.

    ``perf_counter`` is CLOCK_MONOTONIC on Linux, one clock for every process
    of the machine, so the main thread can compare it with its own.
    """
    import time

    for i in range(count - 1):
        progress(i)
    sent = time.perf_counter()
    progress(count - 1)
    return sent


def worker_pid(progress: Callable[[Any], None], release: Any = None) -> None:
    """Report this worker's pid, then block (until killed, or ``release``)."""
    import os
    import time

    progress(os.getpid())
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        if release is not None and release.is_set():
            return
        time.sleep(0.01)


# Dask channels (``dask_channels.py``): raw ways to carry messages from a
# task on a worker to the client, each sending 0 .. count-1 in order.


def dask_log_events(topic: str, count: int) -> int:
    """One ``Worker.log_event`` per message."""
    from distributed import get_worker

    log = get_worker().log_event
    for i in range(count):
        log(topic, i)
    return count


def dask_log_events_coalesced(topic: str, count: int, interval: float) -> int:
    """Messages gathered into one ``log_event`` every ``interval`` s (a list
    of ints per event), the last batch sent at once: offload's scheme."""
    import time

    from distributed import get_worker

    log = get_worker().log_event
    clock = time.perf_counter
    batch: list[int] = []
    due = clock() + interval
    for i in range(count):
        batch.append(i)
        if clock() >= due:
            log(topic, batch)
            batch = []
            due = clock() + interval
    if batch:
        log(topic, batch)
    return count


def dask_queue_puts(name: str, count: int) -> int:
    """One ``distributed.Queue.put`` per message."""
    from distributed import Queue

    queue = Queue(name)
    for i in range(count):
        queue.put(i)
    return count


def dask_timed_events(topic: str, count: int, gap: float) -> int:
    """``count`` events of ``[i, perf_counter()]``, ``gap`` s apart: latency."""
    import time

    from distributed import get_worker

    log = get_worker().log_event
    for i in range(count):
        log(topic, [i, time.perf_counter()])
        time.sleep(gap)
    return count


def dask_timed_queue(name: str, count: int, gap: float) -> int:
    """``count`` queue puts of ``[i, perf_counter()]``, ``gap`` s apart."""
    import time

    from distributed import Queue

    queue = Queue(name)
    for i in range(count):
        queue.put([i, time.perf_counter()])
        time.sleep(gap)
    return count


def timed_progress(count: int, gap: float, progress: Callable[[Any], None]) -> int:
    """Report ``(i, perf_counter())`` ``count`` times, ``gap`` s apart."""
    import time

    for i in range(count):
        progress((i, time.perf_counter()))
        time.sleep(gap)
    return count


def put_pid_and_block() -> None:
    """Put this worker's pid on the inherited queue, then block for 60 s."""
    import os
    import time

    _queue.put(os.getpid())
    time.sleep(60.0)


def report_pairs(count: int, progress: Callable[[Any], None]) -> int:
    """Report ``(1, count) .. (count, count)``: progress a group can read."""
    for i in range(1, count + 1):
        progress((i, count))
    return count


def steps(count: int, reporter: Any) -> int:
    """``count`` steps then ``stop``; for ``submit_steps``."""
    for _ in range(count):
        reporter.step("step")
    reporter.stop("done")
    return count
