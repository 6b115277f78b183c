"""A headless offload script: background work in an asyncio program, no GUI.

The executor delivers on an ``AsyncioEventLoop``; futures are awaited from
a coroutine, and their traits are observed as in a GUI.  The script

1. checksums a few "files" (made-up byte strings) concurrently with
   ``submit_call`` and awaits the digests;
2. counts primes with ``submit_progress``, printing a progress line from
   the main thread as reports arrive;
3. streams running means with ``submit_iteration``;
4. cancels a never-ending task and shows that it ends as cancelled.

Run it with ``python examples/headless.py``; it needs nothing but offload.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import sys
from collections.abc import Callable, Iterator

from offload.api import (
    AsyncioEventLoop,
    TaskFailed,
    TraitsExecutor,
    submit_call,
    submit_iteration,
    submit_progress,
)


def checksum(name: str, size: int) -> tuple[str, str]:
    """SHA-256 of ``size`` bytes derived from ``name``.  Runs on a worker."""
    block = hashlib.sha256(name.encode()).digest() * (size // 32)
    return name, hashlib.sha256(block).hexdigest()


def count_primes(limit: int, progress: Callable[[float], None]) -> int:
    """Count primes below ``limit`` by trial division, reporting fractions."""
    found = 0
    report_every = max(limit // 20, 1)
    for n in range(2, limit):
        if all(n % d for d in range(2, math.isqrt(n) + 1)):
            found += 1
        if n % report_every == 0:
            progress(n / limit)
    return found


def running_means(values: list[float]) -> Iterator[float]:
    """Yield the mean of the first 1, 2, ... values; return the last one."""
    total = 0.0
    for count, value in enumerate(values, start=1):
        total += value
        yield total / count


def forever(progress: Callable[[int], None]) -> None:
    """Report ticks until cancelled (the report then raises TaskCancelled)."""
    tick = 0
    while True:
        tick += 1
        progress(tick)


async def run(executor: TraitsExecutor) -> None:
    # 1. Independent calls, awaited together.
    files = [submit_call(executor, checksum, f"file-{i}.dat", 1 << 20) for i in range(4)]
    for name, digest in await asyncio.gather(*files):
        print(f"checksum {name}: {digest[:16]}")

    # 2. Progress: the observer runs on this (the main) thread.
    primes = submit_progress(executor, count_primes, 60_000)
    primes.observe(
        lambda event: print(f"\rcounting primes: {event.new:4.0%}", end="", flush=True),
        "progress",
    )
    print(f"\rcounting primes: done, {await primes} primes below 60,000")

    # 3. Iteration: each yielded value fires result_event, in order.
    means: list[float] = []
    stream = submit_iteration(executor, running_means, [1.0, 3.0, 5.0, 7.0, 9.0])
    stream.observe(lambda event: means.append(event.new), "result_event")
    await stream
    print("running means: " + ", ".join(f"{m:g}" for m in means))

    # 4. Cancelling a task that would never end.
    endless = submit_progress(executor, forever)
    ticks: list[int] = []
    started = asyncio.Event()

    def on_tick(event: object) -> None:
        ticks.append(event.new)  # type: ignore[attr-defined]
        started.set()

    endless.observe(on_tick, "progress")
    await started.wait()
    endless.cancel()
    try:
        await endless
    except asyncio.CancelledError:
        pass
    except TaskFailed as failure:
        print(f"unexpected failure: {failure}")
    print(f"endless task: {endless.state} after at least {len(ticks)} tick(s)")


def main() -> int:
    event_loop = AsyncioEventLoop()
    executor = TraitsExecutor(event_loop=event_loop)
    try:
        event_loop.event_loop.run_until_complete(run(executor))
    finally:
        executor.shutdown(timeout=10)
        event_loop.close()
    print(f"executor: {executor.state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
