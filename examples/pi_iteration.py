"""Estimate pi by Monte Carlo, and watch the estimate converge on a plot.

A TraitsUI application: *Start* runs a generator on a worker thread that
throws random points at a square and, after every batch, yields the
estimate so far (four times the fraction that fell inside the quarter
circle) with its standard error.  ``submit_iteration`` turns each yielded
value into a ``result_event`` on the main thread, in order, and the plot
grows while the work goes on: the estimate against the number of points,
its band of two standard errors narrowing around pi.  *Cancel* stops the
generator between two batches.

The plot is a Matplotlib figure inside the TraitsUI window (a small editor
below, for Qt and wx).  Needs ``pip install 'offload[examples,pyside6]'``
(TraitsUI and Matplotlib; or another toolkit).  Run it with
``python examples/pi_iteration.py``.
"""

from __future__ import annotations

import gc
import math
import random
from collections.abc import Iterator
from typing import Any

from matplotlib.figure import Figure
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
from traits.etsconfig.api import ETSConfig
from traitsui.api import EditorFactory, HGroup, Item, UItem, VGroup, View

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


# A Matplotlib figure as a TraitsUI editor -----------------------------------


class FigureEditor(EditorFactory):
    """Shows a ``matplotlib.figure.Figure`` trait in a TraitsUI view."""

    def _get_simple_editor_class(self) -> Any:
        return _figure_editor_class()

    def _get_custom_editor_class(self) -> Any:
        return _figure_editor_class()


def _figure_editor_class() -> Any:
    """The editor of the toolkit TraitsUI uses; Matplotlib's canvas for it."""
    if ETSConfig.toolkit == "wx":
        from matplotlib.backends.backend_wxagg import FigureCanvasWxAgg
        from traitsui.wx.editor import Editor

        class WxFigureEditor(Editor):
            def init(self, parent: Any) -> None:
                self.control = FigureCanvasWxAgg(parent, -1, self.value)

            def update_editor(self) -> None:
                self.control.draw_idle()

            def dispose(self) -> None:
                _forget_canvas(self.value)
                super().dispose()
                # Matplotlib's wx canvas can leave a paint's device context
                # in a reference cycle; freed at exit, after wx, it aborts
                # Python.  Collect it now, while wx runs.
                gc.collect()

        return WxFigureEditor

    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    from traitsui.qt.editor import Editor

    class QtFigureEditor(Editor):
        def init(self, parent: Any) -> None:
            self.control = FigureCanvasQTAgg(self.value)
            self.control.setMinimumSize(400, 250)

        def update_editor(self) -> None:
            self.control.draw_idle()

        def dispose(self) -> None:
            _forget_canvas(self.value)
            super().dispose()

    return QtFigureEditor


def _forget_canvas(figure: Figure) -> None:
    """Give ``figure`` a plain canvas: the toolkit's goes with its window,
    not later, when Python collects the figure (wx crashes at exit then)."""
    from matplotlib.backend_bases import FigureCanvasBase

    FigureCanvasBase(figure)


# The application --------------------------------------------------------------


class PiEstimator(HasStrictTraits):
    """The application window."""

    #: Where the generator runs.
    traits_executor = Instance(TraitsExecutor)

    #: How many batches, and points per batch.
    batches = Int(200)
    batch_size = Int(50_000)

    #: The running or last estimation.
    future = Instance(IterationFuture)

    #: Partial estimates received so far, oldest first.
    estimates = List(Tuple(Int(), Float(), Float()))

    #: The latest estimate, as a line of text.
    latest = Str("Press Start.")

    #: The plot: the estimate against the number of points.
    figure = Instance(Figure)

    #: Whether an estimation is running.
    running = Property(Bool(), observe="future:done")

    #: The plot's line of estimates, and its band of two standard errors.
    _line = Instance(object)
    _band = Instance(object)

    start = Button("Start")
    cancel = Button("Cancel")

    def _figure_default(self) -> Figure:
        figure = Figure(figsize=(6.0, 3.6), layout="constrained")
        axes = figure.add_subplot()
        axes.axhline(math.pi, color="tab:red", linewidth=1, label="π")
        (self._line,) = axes.plot([], [], color="tab:blue", label="estimate")
        axes.set_xscale("log")
        axes.set_xlabel("points thrown")
        axes.set_ylabel("estimate of π")
        axes.legend(loc="upper right")
        return figure

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
    def _add_estimate(self, event: Any) -> None:
        # Main thread: one call per yielded value, in order.
        points, estimate, error = event.new
        self.estimates.append((points, estimate, error))
        self.latest = f"pi ≈ {estimate:.6f} ± {error:.6f} after {points:,} points"
        self._plot()

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

    def _plot(self) -> None:
        figure = self.figure  # made on first use, with the line
        points = [row[0] for row in self.estimates]
        values = [row[1] for row in self.estimates]
        errors = [2 * row[2] for row in self.estimates]
        self._line.set_data(points, values)
        axes = self._line.axes
        if self._band is not None:
            self._band.remove()
        self._band = axes.fill_between(
            points,
            [v - e for v, e in zip(values, errors, strict=True)],
            [v + e for v, e in zip(values, errors, strict=True)],
            color="tab:blue", alpha=0.2, linewidth=0,
        )
        axes.set_xlim(points[0], max(points[-1], points[0] * 10))
        half = max(0.02, 1.2 * max(abs(v - math.pi) + e for v, e in zip(values, errors, strict=True)))
        axes.set_ylim(math.pi - half, math.pi + half)
        # Redrawn when the GUI is idle: a burst of estimates, one drawing.
        figure.canvas.draw_idle()

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
            UItem("figure", editor=FigureEditor(), resizable=True, springy=True),
        ),
        title="Monte Carlo estimate of pi",
        resizable=True,
        width=640,
        height=480,
    )


def main() -> None:
    traits_executor = TraitsExecutor()
    try:
        PiEstimator(traits_executor=traits_executor).configure_traits()
    finally:
        traits_executor.shutdown()


if __name__ == "__main__":
    main()
