"""A progress dialog for a slow, blocking call, with a Cancel button.

A TraitsUI application.  Deriving a key from a passphrase with PBKDF2 is
slow on purpose: a single blocking call that would freeze a window for
seconds.  Here *Derive key* runs it on a worker thread in stages through
``submit_steps``; each stage is a step with a message, and
``offload.ui.run_with_progress`` shows a modal dialog whose bar follows
them on the main thread ("42% · stage 21 of 50").  The dialog's *Cancel*,
Escape and its close button all cancel the future: the task's next
``reporter.step(...)`` raises ``TaskCancelled``, and the dialog waits for
the task to end before it closes.  ``run_with_progress`` returns once the
future is done, and the main window shows the outcome.

Needs ``pip install 'offload[traitsui,pyside6]'`` (or another toolkit).  Run it
with ``python examples/progress_dialog.py``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from traits.api import (
    Button,
    HasStrictTraits,
    Instance,
    Int,
    Password,
    Str,
    observe,
)
from traitsui.api import HGroup, Item, UItem, VGroup, View

from offload.api import (
    CANCELLED,
    COMPLETED,
    FAILED,
    IStepsReporter,
    StepsFuture,
    TraitsExecutor,
    submit_steps,
)
from offload.ui import run_with_progress


def derive_key(
    passphrase: str,
    salt: bytes,
    stages: int,
    rounds_per_stage: int,
    reporter: IStepsReporter,
) -> str:
    """Stretch ``passphrase`` through ``stages`` rounds of PBKDF2-SHA256.

    Runs in the background: this is the slow, blocking call.  Each stage
    feeds the previous key into the next; ``reporter.step`` starts each one
    (and raises ``TaskCancelled`` once the future was cancelled).  Returns
    the final key in hexadecimal.
    """
    key = passphrase.encode()
    for stage in range(1, stages + 1):
        reporter.step(f"stage {stage} of {stages}: {rounds_per_stage:,} rounds")
        key = hashlib.pbkdf2_hmac("sha256", key, salt, rounds_per_stage)
    reporter.stop("key derived")
    return key.hex()


class KeyDeriver(HasStrictTraits):
    """The application window."""

    #: Where the blocking call runs.
    traits_executor = Instance(TraitsExecutor)

    passphrase = Password("correct horse battery staple")
    salt = Str("offload-example")

    #: Work per stage, and stages (each stage is one step).
    rounds_per_stage = Int(40_000)
    stages = Int(50)

    #: The running or last derivation.
    future = Instance(StepsFuture)

    #: The outcome of the last derivation.
    outcome = Str("Press Derive key.")

    derive = Button("Derive key")

    @observe("derive")
    def _derive(self, event: Any) -> None:
        self.outcome = "Deriving..."
        self.future = submit_steps(
            self.traits_executor,
            self.stages,
            "Deriving the key",
            derive_key,
            self.passphrase,
            self.salt.encode(),
            self.stages,
            self.rounds_per_stage,
        )
        # Modal: returns once the future is done, whatever the way.
        future = run_with_progress(self.future)
        if future.state == COMPLETED:
            self.outcome = f"Key: {future.result[:32]}..."
        elif future.state == CANCELLED:
            self.outcome = "Cancelled."
        elif future.state == FAILED:
            self.outcome = f"Failed: {future.exception[1]}"

    traits_view = View(
        VGroup(
            Item("passphrase"),
            Item("salt"),
            Item("stages"),
            Item("rounds_per_stage", label="PBKDF2 rounds per stage"),
            HGroup(UItem("derive")),
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
