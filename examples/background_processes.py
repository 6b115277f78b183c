"""Slow, unreliable squaring jobs in worker processes, listed with their state.

A TraitsUI application: *Square* sends the square of the next number to a
worker process, where it takes a few seconds and fails now and then; the
table shows every job and its state as it changes (waiting, executing,
completed, failed, cancelling, cancelled), coloured; *Cancel all* cancels
every job still cancellable and *Clear finished* removes the ended ones.

The executor runs its tasks in processes because it is given a
``MultiprocessingContext``; ``examples/dask_cluster.py`` reuses this window
with a Dask cluster instead.  Everything a job runs lives at module level,
so that it pickles to the worker processes.

Needs ``pip install 'offload[process,traitsui,pyside6]'`` (or another toolkit).
Run it with ``python examples/background_processes.py``.
"""

from __future__ import annotations

import random
import time

from traits.api import (
    Button,
    Float,
    HasStrictTraits,
    Instance,
    Int,
    List,
    Property,
    Str,
    observe,
)
from traitsui.api import HGroup, Item, TabularAdapter, TabularEditor, UItem, VGroup, View

from offload.api import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXECUTING,
    FAILED,
    WAITING,
    CallFuture,
    MultiprocessingContext,
    TraitsExecutor,
    submit_call,
)


def slow_square(n: int, timeout: float = 5.0, failure_rate: float = 0.1) -> int:
    """Return ``n * n``, after up to ``timeout`` seconds; sometimes fail.

    Runs in a worker process.
    """
    time.sleep(random.uniform(0.1, 1.0) * timeout)
    if random.random() < failure_rate:
        raise RuntimeError(f"squaring {n} failed (bad luck: this happens)")
    return n * n


#: Background colour of a job's row, by state.
STATE_COLOURS = {
    WAITING: "#ffffff",
    EXECUTING: "#ccccff",
    COMPLETED: "#ccffcc",
    FAILED: "#ffcccc",
    CANCELLING: "#ffeecc",
    CANCELLED: "#dddddd",
}


class Job(HasStrictTraits):
    """One row of the table: a number and the future of its square."""

    #: The number being squared.
    input = Int()

    #: The future of ``slow_square(input)``.
    future = Instance(CallFuture)

    #: The future's state, for the table (changes on the main thread).
    state = Property(Str(), observe="future:state")

    #: The result, or why there is none.
    outcome = Property(Str(), observe="future:state")

    def _get_state(self) -> str:
        return self.future.state

    def _get_outcome(self) -> str:
        if self.future.state == COMPLETED:
            return str(self.future.result)
        if self.future.state == FAILED:
            return self.future.exception[1]
        return ""


class JobAdapter(TabularAdapter):
    """Shows a :class:`Job` per row, coloured by its state."""

    columns = [("Job", "input"), ("State", "state"), ("Result", "outcome")]

    bg_color = Property()

    #: How the job column reads.
    input_text = Property()

    #: Column widths: fixed pixels (ints: PyQt5 wants them) for job and
    #: state, the rest of the width for results.
    input_width = Int(120)
    state_width = Int(90)
    outcome_width = Float(0.9)

    def _get_bg_color(self) -> str:
        return STATE_COLOURS[self.item.state]

    def _get_input_text(self) -> str:
        return f"square of {self.item.input}"


class SquaringHelper(HasStrictTraits):
    """The application window: submit, watch, cancel and clear jobs."""

    #: Where the jobs run.
    traits_executor = Instance(TraitsExecutor)

    #: The next number to square.
    input = Int(1)

    #: Longest time (s) a job takes; it takes 10% to 100% of this.
    timeout = Float(5.0)

    #: Chance that a job fails.
    failure_rate = Float(0.1)

    #: Every job not yet cleared, oldest first.
    jobs = List(Instance(Job))

    #: Jobs still waiting or executing.
    cancellable = Property(Int(), observe="jobs.items.future:cancellable")

    #: Jobs that have ended.
    finished = Property(Int(), observe="jobs.items.future:done")

    square = Button("Square")
    cancel_all = Button("Cancel all")
    clear_finished = Button("Clear finished")

    @observe("square")
    def _submit(self, event: object) -> None:
        future = submit_call(
            self.traits_executor, slow_square, self.input, self.timeout, self.failure_rate
        )
        self.jobs.append(Job(input=self.input, future=future))
        self.input += 1

    @observe("cancel_all")
    def _cancel_all(self, event: object) -> None:
        for job in self.jobs:
            job.future.cancel()

    @observe("clear_finished")
    def _clear_finished(self, event: object) -> None:
        self.jobs = [job for job in self.jobs if not job.future.done]

    def _get_cancellable(self) -> int:
        return sum(job.future.cancellable for job in self.jobs)

    def _get_finished(self) -> int:
        return sum(job.future.done for job in self.jobs)

    traits_view = View(
        VGroup(
            HGroup(
                Item("input", label="Next number"),
                UItem("square"),
                UItem("cancel_all", enabled_when="cancellable > 0"),
                UItem("clear_finished", enabled_when="finished > 0"),
            ),
            UItem(
                "jobs",
                editor=TabularEditor(
                    adapter=JobAdapter(), auto_update=True, editable=False
                ),
            ),
        ),
        title="Slow squares in background processes",
        resizable=True,
        width=560,
        height=420,
    )


def main() -> None:
    context = MultiprocessingContext()
    traits_executor = TraitsExecutor(context=context)
    try:
        view = SquaringHelper(traits_executor=traits_executor)
        view.configure_traits()
    finally:
        traits_executor.shutdown()
        context.close()


if __name__ == "__main__":
    main()
