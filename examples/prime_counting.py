"""Count the primes below a limit in the background, with a progress bar.

A TraitsUI application: *Count* starts a sieve on a worker thread, which
reports ``(numbers done, limit, message)`` after every segment; the bar
follows it on the main thread, showing the percentage and the message, and
the window stays responsive.  *Cancel* asks the task to stop: the
next ``progress(...)`` call inside the task raises ``TaskCancelled``, which
ends it as cancelled.

Needs ``pip install 'offload[traitsui,pyside6]'`` (or another toolkit).  Run it
with ``python examples/prime_counting.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from traits.api import Any as AnyTrait
from traits.api import (
    Bool,
    Button,
    HasStrictTraits,
    Instance,
    Int,
    Property,
    Range,
    Str,
    Tuple,
    observe,
)
from traitsui.api import HGroup, Item, UItem, VGroup, View

from offload.api import (
    CANCELLED,
    COMPLETED,
    FAILED,
    ProgressFuture,
    TraitsExecutor,
    submit_progress,
)
from offload.ui import ProgressBarEditor

#: Numbers sieved per segment: one progress report per segment.
SEGMENT = 100_000


def count_primes(limit: int, progress: Callable[[tuple[int, int, str]], None]) -> int:
    """Return how many primes are below ``limit`` (segmented sieve).

    Runs in the background.  After each segment it calls
    ``progress((numbers_done, limit, message))``, which raises
    ``TaskCancelled`` once the future was cancelled.
    """
    if limit < 3:
        return 0
    root = math.isqrt(limit - 1)
    small = bytearray([1]) * (root + 1)
    small[0:2] = b"\x00\x00"
    for p in range(2, math.isqrt(root) + 1):
        if small[p]:
            small[p * p :: p] = bytes(len(range(p * p, root + 1, p)))
    base_primes = [p for p in range(2, root + 1) if small[p]]
    count = 0
    segments = -(-limit // SEGMENT)
    for index, low in enumerate(range(0, limit, SEGMENT), start=1):
        high = min(low + SEGMENT, limit)
        segment = bytearray([1]) * (high - low)
        for p in base_primes:
            if p * p >= high:
                break
            start = max(p * p, (low + p - 1) // p * p)
            segment[start - low :: p] = bytes(len(range(start, high, p)))
        if low == 0:
            segment[0 : min(2, high)] = bytes(min(2, high))
        count += sum(segment)
        progress((high, limit, f"segment {index:,} of {segments:,}, {count:,} primes so far"))
    return count


class PrimeCounter(HasStrictTraits):
    """The application window."""

    #: Where the counting runs.
    traits_executor = Instance(TraitsExecutor)

    #: Count the primes below this.
    limit = Range(low=2, high=2_000_000_000, value=50_000_000)

    #: The running or last count.
    future = Instance(ProgressFuture)

    #: Numbers sieved so far, and the limit.
    done = Int(0)
    total = Int(1)

    #: The bar: (fraction done, "42% · what the task says").
    bar = Tuple(AnyTrait(), Str(), value=(0.0, ""))

    #: A line about the last count.
    message = Str("Press Count to start.")

    #: Whether a count is running.
    running = Property(Bool(), observe="future:done")

    count = Button("Count")
    cancel = Button("Cancel")

    @observe("count")
    def _start(self, event: object) -> None:
        self.done, self.total = 0, self.limit
        self.bar = (0.0, "0%")
        self.message = f"Counting the primes below {self.limit:,}..."
        self.future = submit_progress(self.traits_executor, count_primes, self.limit)

    @observe("cancel")
    def _cancel(self, event: object) -> None:
        if self.future is not None and self.future.cancel():
            self.message = "Cancelling..."

    @observe("future:progress")
    def _update_bar(self, event: Any) -> None:
        # Main thread: one call per progress report, in order.
        self.done, self.total, message = event.new
        fraction = self.done / self.total
        self.bar = (fraction, f"{fraction:.0%} · {message}")

    @observe("future:done")
    def _report(self, event: object) -> None:
        future = self.future
        if future is None or not future.done:
            return
        if future.state == COMPLETED:
            self.bar = (1.0, "100% · done")
            self.message = f"There are {future.result:,} primes below {self.total:,}."
        elif future.state == CANCELLED:
            self.bar = (self.bar[0], f"Cancelled at {self.done / self.total:.0%}")
            self.message = f"Cancelled after {self.done:,} numbers."
        elif future.state == FAILED:
            self.message = f"Failed: {future.exception[1]}"

    def _get_running(self) -> bool:
        return self.future is not None and not self.future.done

    traits_view = View(
        VGroup(
            HGroup(
                Item("limit", label="Count primes below", enabled_when="not running"),
                UItem("count", enabled_when="not running"),
                UItem("cancel", enabled_when="running"),
            ),
            UItem("bar", editor=ProgressBarEditor()),
            UItem("message", style="readonly"),
        ),
        title="Counting primes",
        resizable=True,
        width=520,
    )


def main() -> None:
    traits_executor = TraitsExecutor()
    try:
        PrimeCounter(traits_executor=traits_executor).configure_traits()
    finally:
        traits_executor.shutdown()


if __name__ == "__main__":
    main()
