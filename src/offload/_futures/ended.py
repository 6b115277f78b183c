"""How a :class:`~offload.api.FutureGroup` hears of its futures' ends.

A group of thousands of futures must not make their delivery slower (issue
33): a hook in each future (an object in its ``_done_callbacks``, and that
list) is two more objects per pending future that every full collection of
the garbage collector walks.  An executor knows which of its futures ended
anyway: its bookkeeping (``_executor/bookkeeping.py``) collects them, batch
by batch, to count them.  So a group follows the *executor*, once, and
keeps nothing per future but a dict entry:

- the bookkeeping registers itself here, under its router (the router is
  what a future's task handle names, see
  :func:`~offload._futures.base.router_of`);
- a group asks :func:`source_of` the router of a future it adds, and, the
  first time, ``source.follow(listener)``: ``listener`` is a
  ``weakref.WeakMethod`` (the source never keeps a group alive), called on
  the main thread with the futures that ended and their states (two
  lists), once per batch;
- reading a count, a group calls ``source.tally()`` first, so that a
  future whose final message is being delivered right now is counted;
- where the source says when its batches end (``source.batched``: every
  offload router does), the group also has ``source.follow_batches``
  call it at the end of each batch: it then notifies its observers right
  there, instead of asking the event loop for a call, and keeps its
  futures' reports with C-level hooks (a dict's ``__setitem__``, a set's
  ``add``), with no Python call per report.

The layers stay in order: the executor's bookkeeping imports this module,
nothing here imports the executor.
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol


class EndSource(Protocol):
    """What an executor's bookkeeping offers the groups that follow it.
    Main thread."""

    def follow(self, listener: weakref.WeakMethod) -> None:
        """Call ``listener()(futures, states)`` with the futures that ended
        and their states, once per batch (and at each :meth:`tally` that
        finds some), until the listener's object is gone or
        :meth:`unfollow`."""

    #: Whether :meth:`follow_batches` listeners are called at the end of
    #: each batch (else they are never called).
    batched: bool

    def follow_batches(self, listener: weakref.WeakMethod) -> None:
        """Also call ``listener()()`` at the end of each batch, after the
        ends of the batch were told."""

    def unfollow(self, listener: weakref.WeakMethod) -> None:
        """Stop calling ``listener`` (either way it was followed)."""

    def tally(self) -> None:
        """Report the futures that ended since the last report, now."""


#: id(router) -> its executor's bookkeeping.  By id: a router need be
#: neither hashable nor weakly referenced; the bookkeeping holds its
#: router, so the id is not reused while the entry lives.
_SOURCES: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def register_source(router: Any, source: EndSource) -> None:
    """Say that ``source`` reports the ends of the futures ``router``
    delivers (the executor, as it starts; main thread)."""
    _SOURCES[id(router)] = source


def source_of(router: Any) -> EndSource | None:
    """The source that reports the ends of ``router``'s futures, or None."""
    return _SOURCES.get(id(router))
