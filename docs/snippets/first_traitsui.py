"""A first background call in a TraitsUI application."""

import time

from traits.api import Button, HasStrictTraits, Instance, Int, Str, observe
from traitsui.api import HGroup, Item, UItem, View

from offload.api import COMPLETED, FAILED, CallFuture, TraitsExecutor, submit_call


def slow_square(n: int) -> int:
    """Runs in a worker thread: must not touch the UI."""
    time.sleep(2.0)
    if n == 13:
        raise ValueError("13 is unlucky")
    return n * n


class SquareApp(HasStrictTraits):
    #: Made and shut down by main(); the app only submits to it.
    executor = Instance(TraitsExecutor)

    n = Int(7)
    message = Str("Choose a number and press Calculate")
    calculate = Button()
    cancel = Button()

    #: The last submitted task; None before the first.
    future = Instance(CallFuture)

    def _calculate_fired(self) -> None:
        self.message = f"Squaring {self.n}..."
        self.future = submit_call(self.executor, slow_square, self.n)

    def _cancel_fired(self) -> None:
        self.future.cancel()

    @observe("future:done")
    def _show_outcome(self, event) -> None:
        # Runs on the main thread, once the task has ended.
        future = event.object
        if future.state == COMPLETED:
            self.message = f"The square is {future.result}"
        elif future.state == FAILED:
            self.message = f"Failed: {future.exception[1]}"
        else:
            self.message = "Cancelled"

    traits_view = View(
        Item("n"),
        HGroup(
            UItem("calculate", enabled_when="future is None or future.done"),
            UItem("cancel", enabled_when="future is not None and future.cancellable"),
        ),
        UItem("message", style="readonly"),
        title="Squares in the background",
        resizable=True,
    )


def main() -> None:
    executor = TraitsExecutor()  # delivers on the GUI toolkit's event loop
    try:
        SquareApp(executor=executor).configure_traits()
    finally:
        executor.shutdown(timeout=10)


if __name__ == "__main__":
    main()
