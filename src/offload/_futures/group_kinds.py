"""What kind of future a :class:`~offload.api.FutureGroup` holds, and what
a progress report says.

A group follows a future by its class (worked out once per class:
``isinstance`` against an ABC and a look at the class's traits cost
microseconds, and ``add`` runs once per submitted task), and reads a
progress future's fraction from its reports (also what an activity view's
progress bar shows).
"""

from __future__ import annotations

from typing import Any

from traits.api import HasTraits

from offload._futures.base import BaseFuture, IFuture
from offload._futures.progress import ProgressFuture
from offload._futures.steps import StepsFuture

#: How a group follows a future of a class: flags below, or NOT_A_FUTURE.
KINDS: dict[type, int] = {}
NOT_A_FUTURE = 0
FUTURE = 1  # an IFuture with observable state and done
BASE = 2  # a BaseFuture: add_done_callback
STEPS = 4  # a StepsFuture: add_update_callback
PROGRESS = 8  # a ProgressFuture: add_update_callback
PLAIN_BASE = FUTURE | BASE


def kind_of(future: Any) -> int:
    """Work out (once per class: an ABC's isinstance and a look at the
    class's traits cost microseconds) how to follow ``future``."""
    cls = type(future)
    if not (isinstance(future, IFuture) and isinstance(future, HasTraits)):
        return NOT_A_FUTURE  # not cached: a registration may come later
    traits = cls.class_traits()
    if "done" not in traits or "state" not in traits:
        kind = NOT_A_FUTURE
    else:
        kind = FUTURE
        if isinstance(future, BaseFuture):
            kind |= BASE
        if isinstance(future, StepsFuture):
            kind |= STEPS
        elif isinstance(future, ProgressFuture):
            kind |= PROGRESS
    KINDS[cls] = kind
    return kind


def read_progress(info: Any) -> tuple[float | None, str | None]:
    """What a progress report says: ``(fraction or None, message or None)``.

    Understood: a float from 0 to 1; ``(done, total)`` or ``(done, total,
    message)`` with numbers ``done`` and ``total > 0``; a str (a message).
    Anything else says nothing.
    """
    if info.__class__ is float:
        return (info if 0.0 <= info <= 1.0 else None), None
    if info.__class__ is str:
        return None, info
    if isinstance(info, tuple) and len(info) in (2, 3):
        done, total = info[0], info[1]
        message = info[2] if len(info) == 3 and isinstance(info[2], str) else None
        if (
            isinstance(done, (int, float))
            and isinstance(total, (int, float))
            and not isinstance(done, bool)
            and total > 0
        ):
            return min(max(done / total, 0.0), 1.0), message
        return None, message
    return None, None
