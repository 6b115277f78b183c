"""Which Dask channel should carry a task's messages to the client?

A task on a Dask worker sends ``0 .. M-1``; the client checks that every
message arrives once and in order, and times it from ``client.submit`` to
the last message received.  Channels, all on the same ``LocalCluster`` in the
same run, repeats interleaved:

``log_event``
    one ``Worker.log_event(topic, i)`` per message, received by a
    ``Client.subscribe_topic`` handler (in the client's event-loop thread).
``log_event_coalesced``
    the same channel, but the task gathers its messages and sends one event
    (a list) every 5 ms, the last batch at once: what offload's Dask router
    does (``offload/_backends/dask/outbox.py``).
``queue``
    one ``distributed.Queue.put(i)`` per message; a client thread takes
    them with ``Queue.get(batch=True)``.
``offload``
    ``submit_progress`` on a ``DaskContext`` using the same client: the
    coalesced events, then the main thread (asyncio loop) firing the
    future's ``progress`` trait for each message.  End to end, for scale.

Also the latency of one message on each channel: 50 messages 10 ms apart,
each stamped with ``perf_counter()`` on the worker (one clock for every
process of the machine), received at the client (``offload``: at the
main-thread observer).  ``distributed.Variable`` keeps only its last value
(it cannot carry a stream) and pub/sub is gone from recent ``distributed``;
a line says whether they exist here.

Usage: ``python benchmarks/dask_channels.py [--repeat R] [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _tasks  # noqa: E402
from _baselines import DASK_READY as READY  # noqa: E402
from _baselines import dask_subscribe as subscribe  # noqa: E402
from _harness import (  # noqa: E402
    WAIT_TIMEOUT,
    Skip,
    close_loop,
    emit,
    environment,
    make_executor,
    new_loop,
    open_context,
    parse_args,
    poll_until,
    register_tasks_by_value,
    shutdown_executor,
)

#: Messages per run, by channel: the queue is ~50x slower, so fewer.
COUNTS = {"log_event": 100_000, "log_event_coalesced": 100_000, "queue": 3_000,
          "offload": 100_000}
QUICK_COUNTS = {"log_event": 500, "log_event_coalesced": 500, "queue": 50, "offload": 500}

LATENCY_MESSAGES = 50
LATENCY_GAP = 0.010
COALESCE_INTERVAL = 0.005


class Arrivals:
    """Counts ``0 .. count-1`` in order from any thread; ``done`` at the end."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.expected = 0
        self.out_of_order = 0
        self.done = threading.Event()
        self.finished_at = 0.0

    def take(self, value: int) -> None:
        if value == self.expected:
            self.expected += 1
        else:
            self.out_of_order += 1
            self.expected = value + 1
        if self.expected >= self.count and not self.done.is_set():
            self.finished_at = time.perf_counter()
            self.done.set()

    def verify(self, channel: str) -> None:
        if self.out_of_order or self.expected != self.count:
            raise AssertionError(
                f"{channel}: messages lost or reordered ({self.out_of_order} out of "
                f"order, last {self.expected - 1} of {self.count})"
            )


def events_rate(client: Any, count: int, coalesced: bool) -> float:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    arrivals = Arrivals(count)

    def handler(event: tuple) -> None:
        msg = event[1]
        if isinstance(msg, (list, tuple)):  # msgpack turns lists into tuples
            for value in msg:
                arrivals.take(value)
        elif msg != READY:
            arrivals.take(msg)

    subscribe(client, topic, handler)
    try:
        start = time.perf_counter()
        if coalesced:
            future = client.submit(_tasks.dask_log_events_coalesced, topic, count,
                                   COALESCE_INTERVAL, pure=False)
        else:
            future = client.submit(_tasks.dask_log_events, topic, count, pure=False)
        if not arrivals.done.wait(WAIT_TIMEOUT):
            raise TimeoutError(f"log_event: {arrivals.expected} of {count} arrived")
        elapsed = arrivals.finished_at - start
        future.result(timeout=WAIT_TIMEOUT)
    finally:
        client.unsubscribe_topic(topic)
    arrivals.verify("log_event")
    return count / elapsed


def queue_rate(client: Any, count: int) -> float:
    import distributed

    name = f"bench-{uuid.uuid4().hex[:8]}"
    queue = distributed.Queue(name, client=client)
    arrivals = Arrivals(count)
    start = time.perf_counter()
    future = client.submit(_tasks.dask_queue_puts, name, count, pure=False)
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not arrivals.done.is_set():
        if time.monotonic() > deadline:
            raise TimeoutError(f"queue: {arrivals.expected} of {count} arrived")
        for value in queue.get(batch=True):
            arrivals.take(value)
    elapsed = arrivals.finished_at - start
    future.result(timeout=WAIT_TIMEOUT)
    arrivals.verify("queue")
    return count / elapsed


def offload_rate(executor: Any, loop: Any, count: int) -> float:
    from offload.api import submit_progress

    arrivals = Arrivals(count)
    start = time.perf_counter()
    future = submit_progress(executor, _tasks.report_progress, count)
    future.observe(lambda event: arrivals.take(event.new), "progress")
    poll_until(loop, lambda: future.done)
    arrivals.verify("offload")
    if future.state != "completed":
        raise AssertionError(f"offload: the task ended {future.state!r}")
    return count / (arrivals.finished_at - start)


def events_latency(client: Any) -> list[float]:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    delays: list[float] = []
    done = threading.Event()

    def handler(event: tuple) -> None:
        if event[1] == READY:
            return
        i, sent = event[1]
        delays.append(time.perf_counter() - sent)
        if i == LATENCY_MESSAGES - 1:
            done.set()

    subscribe(client, topic, handler)
    try:
        future = client.submit(_tasks.dask_timed_events, topic, LATENCY_MESSAGES,
                               LATENCY_GAP, pure=False)
        done.wait(WAIT_TIMEOUT)
        future.result(timeout=WAIT_TIMEOUT)
    finally:
        client.unsubscribe_topic(topic)
    return delays


def queue_latency(client: Any) -> list[float]:
    import distributed

    name = f"bench-{uuid.uuid4().hex[:8]}"
    queue = distributed.Queue(name, client=client)
    future = client.submit(_tasks.dask_timed_queue, name, LATENCY_MESSAGES, LATENCY_GAP,
                           pure=False)
    delays = []
    for _ in range(LATENCY_MESSAGES):
        _, sent = queue.get(timeout=WAIT_TIMEOUT)
        delays.append(time.perf_counter() - sent)
    future.result(timeout=WAIT_TIMEOUT)
    return delays


def offload_latency(executor: Any, loop: Any) -> list[float]:
    from offload.api import submit_progress

    delays: list[float] = []

    def observer(event: Any) -> None:
        delays.append(time.perf_counter() - event.new[1])

    future = submit_progress(executor, _tasks.timed_progress, LATENCY_MESSAGES, LATENCY_GAP)
    future.observe(observer, "progress")
    poll_until(loop, lambda: future.done)
    return delays


def main(args: argparse.Namespace) -> None:
    counts = QUICK_COUNTS if args.quick else COUNTS
    register_tasks_by_value()
    loop = new_loop()
    try:
        with open_context("dask") as (context, parts):
            client = parts["client"]
            executor = make_executor(context, loop)
            try:
                # Start everything (workers, the pickled module) before timing.
                client.submit(_tasks.noop, pure=False).result(timeout=WAIT_TIMEOUT)
                offload_rate(executor, loop, 100)
                jobs: dict[str, Callable[[], float]] = {
                    "log_event": lambda: events_rate(client, counts["log_event"], False),
                    "log_event_coalesced": lambda: events_rate(
                        client, counts["log_event_coalesced"], True),
                    "queue": lambda: queue_rate(client, counts["queue"]),
                    "offload": lambda: offload_rate(executor, loop, counts["offload"]),
                }
                latencies: dict[str, Callable[[], list[float]]] = {
                    "log_event": lambda: events_latency(client),
                    "queue": lambda: queue_latency(client),
                    "offload": lambda: offload_latency(executor, loop),
                }
                rates: dict[str, list[float]] = {name: [] for name in jobs}
                # interleave() alternates two jobs; here: rotate through all.
                for i in range(args.repeat):
                    names = list(jobs)
                    names = names[i % len(names):] + names[:i % len(names)]
                    for name in names:
                        rates[name].append(jobs[name]())
                delays = {}
                if not args.quick:
                    for name, job in latencies.items():
                        delays[name] = [1e3 * d for d in job()]
            finally:
                shutdown_executor(executor)
    finally:
        close_loop(loop)
    import distributed

    log_event_median = statistics.median(rates["log_event"])
    for name, runs in rates.items():
        record: dict[str, Any] = {
            "benchmark": "dask_channels",
            "channel": name,
            "messages": counts[name],
            "unit": "messages/s",
            "median": statistics.median(runs),
            "runs": runs,
            "ratio_to_log_event": statistics.median(runs) / log_event_median,
            "verified": "every message once, in order",
            "repeat": args.repeat,
            "quick": args.quick,
        }
        if name in delays:
            record["latency_ms_median"] = statistics.median(delays[name])
            record["latency_ms_max"] = max(delays[name])
        record.update(environment())
        emit(record)
    emit({
        "benchmark": "dask_channels",
        "channel": "others",
        "distributed": distributed.__version__,
        "has_Pub_Sub": hasattr(distributed, "Pub") and hasattr(distributed, "Sub"),
        "has_Variable": hasattr(distributed, "Variable"),
        "note": "Variable holds one value (a stream would lose all but the last)",
    })


if __name__ == "__main__":
    _args = parse_args(__doc__.splitlines()[0])
    try:
        main(_args)
    except Skip as _skip:
        emit({"benchmark": "dask_channels", "skipped": str(_skip), **environment()})
