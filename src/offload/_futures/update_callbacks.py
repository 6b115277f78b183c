"""Plain callables a future runs after each delivered update.

How a :class:`~offload.api.FutureGroup` follows the fraction of many steps
and progress futures: a Traits observer (or ``on_trait_change``) costs a
few microseconds per notification, a plain call a tenth of that, and a
group of 10,000 futures must not slow their delivery by more than 10%
(issue 33).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from traits.api import Any as AnyTrait
from traits.api import HasTraits


class UpdateCallbacks(HasTraits):
    """Mixin of the futures that run plain callables after each update.

    The callables receive the future, then what the update brought, if
    the future's kind has one: nothing more for a
    :class:`~offload.api.StepsFuture`, the report for a
    :class:`~offload.api.ProgressFuture`.  One callable can so serve
    many futures (a group adds the same one to all of its futures).
    """

    #: None, the one callable, or a list of them (main thread only): one
    #: callable, the usual case, takes no list (an object per future that
    #: every full collection would walk).
    _update_callbacks = AnyTrait(None)

    def add_update_callback(self, callback: Callable[..., None]) -> None:
        """Call ``callback`` on the main thread after each delivered update,
        once the update's own notifications have run (for
        :class:`~offload.api.FutureGroup`: cheaper than observing)."""
        callbacks = self._update_callbacks
        if callbacks is None:
            self._update_callbacks = callback
        elif callbacks.__class__ is list:
            callbacks.append(callback)
        else:
            self._update_callbacks = [callbacks, callback]

    def _run_update_callbacks(self, *update: Any) -> None:
        """Call each callback of the list with this future and ``update``
        (main thread).  A single callable is called inline by the future's
        update: the usual case, without this call."""
        for callback in list(self._update_callbacks):
            callback(self, *update)
