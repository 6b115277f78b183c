"""Estimate pi by Monte Carlo, streaming partial estimates into a table.

A TraitsUI application: *Start* runs a generator on a worker thread that
throws random points at a square and, after every batch, yields the
estimate so far (four times the fraction that fell inside the quarter
circle).  ``submit_iteration`` turns each yielded value into a
``result_event`` on the main thread, in order, so the table grows while the
work goes on (newest estimate on top).  *Cancel* stops the generator between two batches.

Needs ``pip install 'offload[traitsui,pyside6]'`` (or another toolkit).  Run it
with ``python examples/pi_iteration.py``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

from traits.api import (
    Bool,
    Button,
    Float,
    HasStrictTraits,
    Instance,
    Int,
    List,
    Property,
    Str,
    Tuple,
    observe,
)
from traitsui.api import HGroup, Item, TabularAdapter, TabularEditor, UItem, VGroup, View

from offload.api import (
    CANCELLED,
    COMPLETED,
    FAILED,
    IterationFuture,
    TraitsExecutor,
    submit_iteration,
)


def pi_estimates(
    batches: int, batch_size: int, seed: int | None = None
) -> Iterator[tuple[int, float, float]]:
    """Yield ``(points, estimate, standard_error)`` after each batch.

    Runs in the background.  The standard error of the estimate after ``n``
    points is ``4 * sqrt(q * (1 - q) / n)``, with ``q`` the fraction inside.
    """
    rng = random.Random(seed)
    inside = 0
    for batch in range(1, batches + 1):
        for _ in range(batch_size):
            x, y = rng.random(), rng.random()
            inside += x * x + y * y < 1.0
        points = batch * batch_size
        fraction = inside / points
        yield points, 4.0 * fraction, 4.0 * math.sqrt(fraction * (1.0 - fraction) / points)


class EstimateAdapter(TabularAdapter):
    """One row per partial estimate: points, estimate, error, distance to pi."""

    columns = [("Points", 0), ("Estimate", 1), ("± std. error", 2), ("Off by", 3)]

    def get_width(self, object: object, trait: str, column: int) -> float:
        # Fixed pixels (ints: PyQt5 wants them) for the first three, the rest
        # of the width for the last.
        return [110, 100, 110, 0.9][column]

    def get_text(self, object: object, trait: str, row: int, column: int) -> str:
        points, estimate, error = getattr(object, trait)[row]
        return [f"{points:,}", f"{estimate:.6f}", f"{error:.6f}", f"{estimate - math.pi:+.6f}"][
            column
        ]


class PiEstimator(HasStrictTraits):
    """The application window."""

    #: Where the generator runs.
    traits_executor = Instance(TraitsExecutor)

    #: How many batches, and points per batch.
    batches = Int(200)
    batch_size = Int(50_000)

    #: The running or last estimation.
    future = Instance(IterationFuture)

    #: Partial estimates received so far, newest first.
    estimates = List(Tuple(Int(), Float(), Float()))

    #: The latest estimate, as a line of text.
    latest = Str("Press Start.")

    #: Whether an estimation is running.
    running = Property(Bool(), observe="future:done")

    start = Button("Start")
    cancel = Button("Cancel")

    @observe("start")
    def _start(self, event: object) -> None:
        self.estimates = []
        self.latest = "Throwing points..."
        self.future = submit_iteration(
            self.traits_executor, pi_estimates, self.batches, self.batch_size
        )

    @observe("cancel")
    def _cancel(self, event: object) -> None:
        if self.future is not None:
            self.future.cancel()

    @observe("future:result_event")
    def _add_estimate(self, event: object) -> None:
        # Main thread: one call per yielded value, in order.
        points, estimate, error = event.new  # type: ignore[attr-defined]
        self.estimates.insert(0, (points, estimate, error))
        self.latest = f"pi ≈ {estimate:.6f} ± {error:.6f} after {points:,} points"

    @observe("future:done")
    def _finish(self, event: object) -> None:
        future = self.future
        if future is None or not future.done:
            return
        if future.state == COMPLETED:
            self.latest += " (done)"
        elif future.state == CANCELLED:
            self.latest += " (cancelled)"
        elif future.state == FAILED:
            self.latest = f"Failed: {future.exception[1]}"

    def _get_running(self) -> bool:
        return self.future is not None and not self.future.done

    traits_view = View(
        VGroup(
            HGroup(
                Item("batches", enabled_when="not running"),
                Item("batch_size", label="Points per batch", enabled_when="not running"),
                UItem("start", enabled_when="not running"),
                UItem("cancel", enabled_when="running"),
            ),
            UItem("latest", style="readonly"),
            UItem(
                "estimates",
                editor=TabularEditor(adapter=EstimateAdapter(), editable=False),
            ),
        ),
        title="Monte Carlo estimate of pi",
        resizable=True,
        width=560,
        height=420,
    )


def main() -> None:
    traits_executor = TraitsExecutor()
    try:
        PiEstimator(traits_executor=traits_executor).configure_traits()
    finally:
        traits_executor.shutdown()


if __name__ == "__main__":
    main()
