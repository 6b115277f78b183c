"""``executor.futures`` and ``executor.counts``: what runs, published once per batch.

An application with tens of tasks shows how many wait, run and ended (a
status bar, an activity list).  Notifying that per message would cost more
than the messages; so the executor notifies once per *batch*: the first
delivery of messages by the router (``Inbox.on_batch``) ends with one
notification of ``futures`` and ``counts``, whatever the batch held, and a
burst of submissions asks the event loop for one call after it.  Values
are computed only for observers: unobserved, a batch pays two
``trait_property_changed`` calls that find no notifier.

Futures not yet done are the executor's task table; the ones that ended
are only counted, by state, in :attr:`Bookkeeping.totals`: nothing here
keeps a finished future (or its result) alive past the batch that ended it.
Which state a future ended in is read after its final message was
delivered, so :attr:`Bookkeeping.ended` keeps the futures of the batch
until then.

The same count tells the :class:`~offload.api.FutureGroup` objects that
follow the executor which futures ended (``_futures/ended.py``): a group
then keeps no hook in each of its futures.  With no group following, that
costs nothing per task.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from traits.api import Undefined  # type: ignore[attr-defined]  # public; missing from the stubs

from offload._futures.base import count_states, states_of
from offload._futures.ended import register_source
from offload._futures.soon import soon_caller
from offload._futures.states import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXECUTING,
    FAILED,
    WAITING,
)

logger = logging.getLogger("offload.executor")

#: Up to this many ended futures, a batch counts them in a Python loop;
#: past it, in C loops (``count_states``), whose set-up costs more than a
#: round trip's one or two futures.
_FEW = 16

#: The keys of ``executor.counts``, in the order of a task's life.
STATES = (WAITING, EXECUTING, CANCELLING, COMPLETED, FAILED, CANCELLED)


class Bookkeeping:
    """Tallies an executor's ended futures and notifies once per batch.

    Main thread, except :meth:`changed`, which is safe from any thread.
    """

    __slots__ = (
        "_executor_ref", "_router", "_event_loop", "_call_soon", "_thread_id",
        "scheduled", "batched", "ended", "totals", "_followers", "_batch_followers",
        "__weakref__",
    )

    def __init__(self, executor: Any, event_loop: Any, router: Any) -> None:
        # The router holds this (through the task table): never the executor.
        self._executor_ref = weakref.ref(executor)
        self._router = router
        self._event_loop = event_loop
        self._call_soon: Callable[[Callable[[], None]], None] | None = None
        self._thread_id = threading.get_ident()
        #: True while a publication is asked for and not yet made: the
        #: executor reads it before calling :meth:`changed`, once a submission.
        self.scheduled = False
        #: Futures whose final message this batch delivers (or delivered).
        self.ended: list[Any] = []
        #: state -> number of futures that ended in it.
        self.totals = dict.fromkeys((COMPLETED, FAILED, CANCELLED), 0)
        #: Weak methods of the groups to tell of each end (see follow) ...
        self._followers: list[weakref.WeakMethod] = []
        #: ... and of each batch's end (see follow_batches).
        self._batch_followers: list[weakref.WeakMethod] = []
        register_source(router, self)
        # offload's routers say when a batch ends; a router that is only
        # registered with IMessageRouter may not: each change then asks the
        # event loop for a call after the batch.
        #: Whether the end of each batch publishes (and tells
        #: follow_batches' listeners): the router says when batches end.
        self.batched = hasattr(router, "on_batch") and hasattr(router, "request_batch")
        if self.batched:
            router.on_batch = self.publish

    def watch(self, table: Any) -> None:
        """Collect ``table``'s ended futures (its ``ended`` list is ours)."""
        if not self.batched:
            # Each end asks for a publication: no router batch will.
            self.ended = _NoticedList(self.changed)
        table.ended = self.ended

    def changed(self) -> None:
        """Something to publish, outside a batch (a submission).  Any thread."""
        if self.scheduled:
            return
        self.scheduled = True
        if self.batched:
            # The batch's end publishes.
            self._router.request_batch()
        elif threading.get_ident() == self._thread_id:
            call_soon = self._call_soon
            if call_soon is None:
                call_soon = self._call_soon = soon_caller(self._event_loop)
            call_soon(self.publish)
        else:
            # The main thread publishes when it next delivers.
            self.scheduled = False

    def follow(self, listener: weakref.WeakMethod) -> None:
        """Call ``listener()(futures, states)`` with the futures that ended
        and their states, once per batch (a group following this executor;
        main thread)."""
        if listener not in self._followers:
            self._followers.append(listener)

    def follow_batches(self, listener: weakref.WeakMethod) -> None:
        """Also call ``listener()()`` at the end of each batch, after the
        ends are told (only if :attr:`batched`; main thread)."""
        if listener not in self._batch_followers:
            self._batch_followers.append(listener)

    def unfollow(self, listener: weakref.WeakMethod) -> None:
        """Stop calling ``listener`` (main thread)."""
        for followers in (self._followers, self._batch_followers):
            if listener in followers:
                followers.remove(listener)

    def publish(self) -> None:
        """Count the batch's ended futures; notify the executor's observers."""
        self.scheduled = False
        self.tally()
        if self._batch_followers:
            _tell(self._batch_followers, ())
        executor = self._executor_ref()
        if executor is not None:
            # New values are computed only if someone observes them.
            executor.trait_property_changed("futures", Undefined)
            executor.trait_property_changed("counts", Undefined)

    def tally(self) -> None:
        """Move the ended futures that are done into ``totals``, and tell the
        followers which (main thread)."""
        ended = self.ended
        if not ended:
            return
        if self._followers:
            self._tally_and_tell(ended)
            return
        totals = self.totals
        if len(ended) > _FEW:
            counts = count_states(ended)
            if sum(counts[done] for done in totals) + counts[None] == len(ended):
                # The usual case: every one is done (or has no state to count).
                for done in totals:
                    totals[done] += counts[done]
                # In place: the task table appends to this very list.
                ended.clear()
                return
        pending = []
        for future, state in zip(ended, states_of(ended), strict=True):
            if state in totals:
                totals[state] += 1
            elif state is not None:
                # Its final message is still to come (an observer of the
                # same batch asked): count it next time.
                pending.append(future)
        # In place: the task table appends to this very list.
        ended[:] = pending

    def _tally_and_tell(self, ended: list[Any]) -> None:
        """:meth:`tally`, with groups to tell: apart, so that the common
        case (no group) pays nothing per future for them."""
        totals = self.totals
        pending = []
        done = []
        states = []
        for future, state in zip(ended, states_of(ended), strict=True):
            if state in totals:
                totals[state] += 1
                done.append(future)
                states.append(state)
            elif state is not None:
                pending.append(future)
        # Before telling: a follower that reads the counts tallies again.
        ended[:] = pending
        _tell(self._followers, (done, states))

    def counts(self, pending: Iterable[Any]) -> dict[str, int]:
        """state -> number of futures, pending ones included (main thread)."""
        self.tally()
        counts = dict.fromkeys(STATES, 0)
        counts.update(self.totals)
        for state in states_of([*pending, *self.ended]):
            if state in counts:
                counts[state] += 1
        return counts


def _tell(followers: list[weakref.WeakMethod], args: tuple) -> None:
    """Call each live follower with ``args``; forget the dead ones."""
    for listener in tuple(followers):
        follower = listener()
        if follower is None:
            # The group is gone (nothing here kept it).
            if listener in followers:
                followers.remove(listener)
            continue
        try:
            follower(*args)
        except Exception:
            # Delivery goes on; the group's trouble is logged.
            logger.exception("error in a FutureGroup told of this executor's batch")


class _NoticedList(list):
    """The list of ended futures for a router that does not say when its
    batches end: each append asks for a publication."""

    __slots__ = ("_notice",)

    def __init__(self, notice: Callable[[], None]) -> None:
        super().__init__()
        self._notice = notice

    def append(self, future: Any) -> None:
        super().append(future)
        self._notice()
