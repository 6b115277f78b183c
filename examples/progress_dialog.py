"""A progress dialog for a slow, blocking call, with a Cancel button.

A TraitsUI application.  Deriving a key from a passphrase with PBKDF2 is
slow on purpose: a single blocking call that would freeze a window for
seconds.  Here *Derive key* runs it on a worker thread in stages through
``submit_progress``; each stage reports ``(stage, stages)``, and a dialog
with a progress bar follows the reports on the main thread.  The dialog's
*Cancel* cancels the future: the task's next ``progress(...)`` call raises
``TaskCancelled``.  The dialog closes itself when the task ends, whatever
the way (the main window closes it), and the main window shows the
outcome.

Needs ``pip install 'offload[traitsui,pyside6]'`` (or another toolkit).  Run it
with ``python examples/progress_dialog.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from traits.api import (
    Any,
    Bool,
    Button,
    HasStrictTraits,
    Instance,
    Int,
    Password,
    Property,
    Str,
    observe,
)
from traitsui.api import HGroup, Item, ProgressEditor, UItem, VGroup, View

from offload.api import (
    CANCELLED,
    COMPLETED,
    FAILED,
    ProgressFuture,
    TraitsExecutor,
    submit_progress,
)


def derive_key(
    passphrase: str,
    salt: bytes,
    stages: int,
    rounds_per_stage: int,
    progress: Callable[[tuple[int, int]], None],
) -> str:
    """Stretch ``passphrase`` through ``stages`` rounds of PBKDF2-SHA256.

    Runs in the background: this is the slow, blocking call.  Each stage
    feeds the previous key into the next, then reports ``(stage, stages)``;
    the report raises ``TaskCancelled`` once the future was cancelled.
    Returns the final key in hexadecimal.
    """
    key = passphrase.encode()
    progress((0, stages))
    for stage in range(1, stages + 1):
        key = hashlib.pbkdf2_hmac("sha256", key, salt, rounds_per_stage)
        progress((stage, stages))
    return key.hex()


class ProgressDialog(HasStrictTraits):
    """A dialog showing the progress of one :class:`ProgressFuture`."""

    #: The task being followed.
    future = Instance(ProgressFuture)

    #: Stages done, and the number of stages, for the bar.
    done = Int(0)
    total = Int(1)

    #: The bar's maximum: one past ``total``, because pyface's progress bar
    #: closes itself on reaching its maximum (and on wx destroys itself),
    #: after which it would no longer move for the next task.
    bar_max = Property(Int(), observe="total")

    #: What the dialog says.
    message = Str("Starting...")

    cancel = Button("Cancel")

    @observe("future:progress")
    def _update(self, event: Any) -> None:
        # Main thread: one call per report, in order.
        self.done, self.total = event.new
        self.message = f"Stage {self.done} of {self.total}"

    @observe("cancel")
    def _cancel(self, event: object) -> None:
        if self.future.cancel():
            self.message = "Cancelling..."

    def _get_bar_max(self) -> int:
        return self.total + 1

    traits_view = View(
        VGroup(
            UItem(
                "done",
                editor=ProgressEditor(min=0, max_name="bar_max"),
            ),
            UItem("message", style="readonly"),
            HGroup(UItem("cancel", enabled_when="future.cancellable"), show_border=False),
        ),
        title="Deriving the key",
        width=360,
    )


class KeyDeriver(HasStrictTraits):
    """The application window."""

    #: Where the blocking call runs.
    traits_executor = Instance(TraitsExecutor)

    passphrase = Password("correct horse battery staple")
    salt = Str("offload-example")

    #: Work per stage, and stages (each stage is one progress report).
    rounds_per_stage = Int(40_000)
    stages = Int(50)

    #: The running or last derivation.
    future = Instance(ProgressFuture)

    #: The dialog following it, while it runs.
    dialog = Instance(ProgressDialog)

    #: The dialog's window, closed when the derivation ends.
    dialog_ui = Any()

    #: The outcome of the last derivation.
    outcome = Str("Press Derive key.")

    #: Whether a derivation is running.
    running = Property(Bool(), observe="future:done")

    derive = Button("Derive key")

    @observe("derive")
    def _derive(self, event: object) -> None:
        self.outcome = "Deriving..."
        self.future = submit_progress(
            self.traits_executor,
            derive_key,
            self.passphrase,
            self.salt.encode(),
            self.stages,
            self.rounds_per_stage,
        )
        self.dialog = ProgressDialog(future=self.future)
        self.dialog_ui = self.dialog.edit_traits()

    @observe("future:done")
    def _report(self, event: object) -> None:
        future = self.future
        if future is None or not future.done:
            return
        if self.dialog_ui is not None:
            self.dialog_ui.dispose()
            self.dialog_ui = None
        if future.state == COMPLETED:
            self.outcome = f"Key: {future.result[:32]}..."
        elif future.state == CANCELLED:
            self.outcome = "Cancelled."
        elif future.state == FAILED:
            self.outcome = f"Failed: {future.exception[1]}"

    def _get_running(self) -> bool:
        return self.future is not None and not self.future.done

    traits_view = View(
        VGroup(
            Item("passphrase"),
            Item("salt"),
            Item("stages"),
            Item("rounds_per_stage", label="PBKDF2 rounds per stage"),
            HGroup(UItem("derive", enabled_when="not running")),
            UItem("outcome", style="readonly"),
        ),
        title="Key derivation",
        width=480,
    )


def main() -> None:
    traits_executor = TraitsExecutor()
    try:
        KeyDeriver(traits_executor=traits_executor).configure_traits()
    finally:
        traits_executor.shutdown()


if __name__ == "__main__":
    main()
