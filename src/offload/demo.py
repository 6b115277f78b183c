"""A headless tour of offload: ``python -m offload.demo``.

Runs a few tasks of each kind on worker threads with an asyncio event loop,
draws a live progress bar in the terminal from the main thread, cancels one
task, and prints every future's final state.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Callable, Generator

from offload.api import (
    AsyncioEventLoop,
    TraitsExecutor,
    submit_call,
    submit_iteration,
    submit_progress,
)


def slow_square(x: float) -> float:
    time.sleep(0.2)
    return x * x


def count_primes(limit: int, progress: Callable[[float], None]) -> int:
    """Count primes below ``limit``, reporting progress as a fraction."""
    count = 0
    step = max(limit // 100, 1)
    for n in range(2, limit):
        if all(n % d for d in range(2, math.isqrt(n) + 1)):
            count += 1
        if n % step == 0:
            progress(n / limit)
    return count


def partial_sums(terms: int) -> Generator[float, None, float]:
    """Partial sums of the Leibniz series for pi."""
    total = 0.0
    for k in range(terms):
        total += 4 * (-1) ** k / (2 * k + 1)
        if k % (terms // 10) == 0:
            time.sleep(0.02)
            yield total
    return total


def never_ending(progress: Callable[[None], None]) -> None:
    while True:
        time.sleep(0.01)
        progress(None)  # raises TaskCancelled once cancelled


def _bar(fraction: float, width: int = 40) -> str:
    filled = int(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {fraction:6.1%}"


async def _tour(executor: TraitsExecutor) -> None:
    squares = [submit_call(executor, slow_square, x) for x in range(4)]
    primes = submit_progress(executor, count_primes, 400_000)
    primes.observe(
        lambda event: print("\rcounting primes " + _bar(event.new), end="", flush=True),
        "progress",
    )
    pi = submit_iteration(executor, partial_sums, 200_000)
    estimates: list[float] = []
    pi.observe(lambda event: estimates.append(event.new), "result_event")
    doomed = submit_progress(executor, never_ending)

    await asyncio.sleep(0.3)
    doomed.cancel()
    results = [await future for future in squares]
    prime_count = await primes
    print("\rcounting primes " + _bar(1.0))
    pi_estimate = await pi
    try:
        await doomed
    except asyncio.CancelledError:
        pass

    print(f"squares:        {results}")
    print(f"primes < 400000: {prime_count}")
    print(f"pi estimates:   {', '.join(f'{e:.5f}' for e in estimates)} -> {pi_estimate:.6f}")
    print("final states:")
    for name, future in [("squares[0]", squares[0]), ("primes", primes),
                         ("pi", pi), ("never_ending", doomed)]:
        print(f"  {name:14} {future.state}")


def main() -> int:
    event_loop = AsyncioEventLoop()
    executor = TraitsExecutor(event_loop=event_loop)
    try:
        event_loop.event_loop.run_until_complete(_tour(executor))
    finally:
        executor.shutdown(timeout=10)
        event_loop.close()
    print(f"executor: {executor.state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
