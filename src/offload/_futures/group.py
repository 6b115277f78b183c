"""FutureGroup: many futures counted, waited for and cancelled as one.

What it costs, and when it notifies
-----------------------------------
A group of 10,000 futures must not slow their delivery by more than 10%
(issue 33, ``benchmarks/group.py``).  So it follows no future with a Traits
observer (an ``observe`` costs more than the rest of a task's main-thread
work), and, for the futures of an executor, keeps no object per future at
all (each would be walked by every full collection of the garbage
collector):

- the end of a future of an executor: the group follows the *executor*
  (``offload._futures.ended``), once; the executor's bookkeeping, which
  counts the futures that ended in each delivered batch, tells the group
  which and in which state, and the group counts those in its dict of
  members.  ``add`` is a dict insert;
- the end of another :class:`BaseFuture` (made by hand): a small callable
  object in its callbacks (``add_done_callback``); of another future with
  a ``done`` trait: ``on_trait_change``;
- a :class:`StepsFuture`'s fraction and a :class:`ProgressFuture`'s
  reports: one callable per group in the futures' update callbacks
  (``add_update_callback``; at most 25 steps updates a second by
  default), which notes the future (and keeps its last report); the
  fractions are read once per batch.  For the futures of an executor that
  says when its batches end (all of offload's), that callable is a C
  method (a set's ``add``, a dict's ``__setitem__``): no Python call per
  report.

The group notifies its observers once per batch of delivered messages,
however many futures it ended and reports it brought: at the end of the
batch, which the executors it follows tell it of; for the other futures
(and for ``add``), the first change asks the event loop for a call after
the batch (``offload._futures.soon``).  That notification counts the
ended futures and reads the kept reports first.  Reading a count counts
first too (asking the executors to report their ends so far), so what is
read is never stale.

Nothing an executor holds keeps a group alive: keep a reference to a group
as long as you use it.

Why this module is long: a group's traits, its ways to wait (a generator,
a blocking ``wait``, ``await``) and the hooks that feed it all keep the
same counts consistent; they are one object's behaviour.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

from traits.api import Any as AnyTrait
from traits.api import Bool, Float, HasStrictTraits, Int, List, Property

from offload._event_loops.asyncio_loop import AsyncioEventLoop
from offload._event_loops.interface import IEventLoop
from offload._futures.base import event_loop_of, router_of, states_of
from offload._futures.ended import source_of
from offload._futures.group_kinds import (
    BASE,
    KINDS,
    PLAIN_BASE,
    PROGRESS,
    STEPS,
    kind_of,
    read_progress,
)
from offload._futures.soon import soon_caller
from offload._futures.states import CANCELLED, COMPLETED, FAILED, WAITING

#: The traits a group notifies, in the order it notifies them.
_PUBLISHED = ("total", "done_count", "failed_count", "cancelled_count", "fraction", "done")

#: Longest single run of the event loop while waiting with no timeout (s).
_WAIT_CHUNK = 60.0


class FutureGroup(HasStrictTraits):
    """Futures of any kind, counted and followed as one.

    Parameters
    ----------
    futures : iterable of futures, optional
        The first members; :meth:`add` adds more.
    event_loop : IEventLoop, optional
        The event loop that delivers the futures' messages: the group
        notifies its observers through it, once per batch, and
        :meth:`wait` and :meth:`as_completed` run it.  By default, the
        executor's loop of the first unfinished future added.

    Notes
    -----
    Make it, add to it, and use it on the main thread.  The counts are
    current whenever they are read; their notifications (main thread) come
    once per batch of delivered messages, just after it, not once per
    future.  Following a future of an executor costs a dict entry until it
    is done (a future made by hand: two small objects).  The executors
    hold the group weakly: a group nothing else refers to is collected,
    and its observers hear nothing more.
    """

    #: How many futures the group holds.
    total = Property(Int())

    #: How many of them are done (COMPLETED, FAILED or CANCELLED).
    done_count = Property(Int())

    #: How many of them FAILED.
    failed_count = Property(Int())

    #: How many of them were CANCELLED.
    cancelled_count = Property(Int())

    #: True when every future is done (and for an empty group).
    done = Property(Bool())

    #: Overall progress from 0.0 to 1.0: a done future counts 1, a running
    #: steps future its ``fraction``, a progress future the last numeric
    #: value it reported (a float from 0 to 1, or ``(done, total)`` or
    #: ``(done, total, message)``), any other 0.  1.0 for an empty group.
    fraction = Property(Float())

    #: The futures, in the order they were added (a copy).
    futures = Property(List())

    # Private traits ---------------------------------------------------------

    _book = AnyTrait()  # what add and each batch read: a _Book
    _ended = AnyTrait()  # futures that ended since the last count, in order
    _completed = AnyTrait()  # list of done futures counted, in the order they ended
    _failed = AnyTrait(0)
    _cancelled = AnyTrait(0)
    _partial = AnyTrait()  # unfinished future -> known fraction
    _partial_sum = AnyTrait(0.0)
    _published = AnyTrait()  # values last notified, in _PUBLISHED order
    _event_loop = AnyTrait()
    _call_soon = AnyTrait()
    _waiters = AnyTrait()  # plain callables run once the group is done
    _sources = AnyTrait()  # EndSource -> None: the executors followed
    _listener = AnyTrait()  # WeakMethod of _ended_in_batch, what sources call
    _batch_listener = AnyTrait()  # WeakMethod of _batch_ended, what batched sources call

    def __init__(
        self,
        futures: Iterable[Any] = (),
        *,
        event_loop: IEventLoop | None = None,
        **traits: Any,
    ) -> None:
        super().__init__(**traits)
        if event_loop is not None and not isinstance(event_loop, IEventLoop):
            raise TypeError(
                f"FutureGroup(event_loop=...) needs an IEventLoop (the executor's, "
                f"e.g. AsyncioEventLoop()), got {event_loop!r}"
            )
        self._book = _Book(self)
        self._sources = {}
        self._listener = weakref.WeakMethod(self._ended_in_batch)
        self._batch_listener = weakref.WeakMethod(self._batch_ended)
        self._ended = []
        self._completed = []
        self._partial = {}
        self._waiters = []
        self._published = None
        if event_loop is not None:
            self._use_event_loop(event_loop)
        for future in futures:
            self.add(future)
        # Nobody observes the group yet: what it holds now is its start.
        self._published = tuple(getattr(self, name) for name in _PUBLISHED)

    # Public API -------------------------------------------------------------

    def add(self, future: Any) -> None:
        """Add ``future`` to the group (main thread).

        Raises
        ------
        TypeError
            If ``future`` is not a future (an ``IFuture`` with ``state``
            and ``done`` traits).
        ValueError
            If it is in the group already.
        """
        # Once per submitted task, often: kept short (benchmarks/group.py).
        kind = KINDS.get(type(future))
        if kind is None:
            kind = kind_of(future)
        if not kind:
            raise TypeError(
                "FutureGroup holds futures (what submit_call, submit_steps... "
                f"return), got {future!r}"
            )
        book = self._book
        members = book.members
        if future in members:
            raise ValueError(f"{future!r} is already in this group; add it once")
        members[future] = None
        if kind & BASE:
            # Not None: the future is not done, and an executor delivers it.
            router = router_of(future)
            if router is not None:
                if router is not book.router:
                    self._use_router(router, future)
                if book.source is not None:
                    # Its executor tells of its end: no hook in the future.
                    if kind != PLAIN_BASE:
                        if not book.batched:
                            self._follow_fraction(future, kind)
                        elif kind & PROGRESS:
                            # A C-level hook: _batch_ended reads what it keeps.
                            future.add_update_callback(book.keep_report)
                        else:
                            future.add_update_callback(book.note_steps)
                            if future._complete:
                                book.steps.add(future)  # read its progress so far
                    if not book.scheduled:
                        self._schedule()
                    return
        if future.done:
            # Its executor may still report it (added by an observer of its
            # final message): counted now, not then.
            book.early.add(future)
            self._future_ended(future)
            return
        if self._event_loop is None:
            self._use_event_loop(_event_loop_of(future))
        if kind == PLAIN_BASE:
            future.add_done_callback(_End(self, self._ended, future))
        else:
            self._follow(future, kind)
        if not book.scheduled:
            self._schedule()

    def cancel(self) -> int:
        """Cancel every future of the group that can be; return how many.

        Waiting futures first, newest first, then running ones: a running
        task that stops frees its worker, which must not take a queued
        task of this group meanwhile.  Main thread.
        """
        pending = [future for future in reversed(self._book.members) if not future.done]
        pending.sort(key=lambda future: future.state != WAITING)
        return sum(1 for future in pending if future.cancel())

    def wait(self, timeout: float | None = None) -> bool:
        """Run the event loop until every future is done; True if they are.

        For scripts and tests, on the main thread, with the event loop not
        running (in a coroutine, ``await group``; in a GUI, observe
        ``done``).  Returns False if ``timeout`` seconds passed first.
        """
        return self._drive(lambda: self._is_done(), timeout)

    def as_completed(self, timeout: float | None = None) -> Iterator[Any]:
        """Yield the futures as they end, running the event loop meanwhile.

        Those already done come first.  For scripts and tests, on the main
        thread, with the event loop not running.  Futures added while
        iterating are yielded too.

        Raises
        ------
        TimeoutError
            If futures are still not done ``timeout`` seconds after the
            call.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        completed = self._completed
        index = 0
        while index < len(self._book.members):
            self._catch_up()
            if index < len(completed):
                index += 1
                yield completed[index - 1]
                continue
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._drive(_longer_than(self, index), left):
                missing = len(self._book.members) - len(completed)
                raise TimeoutError(
                    f"{missing} of {len(self._book.members)} futures of the group not "
                    f"done after {timeout} s"
                )

    def __await__(self) -> Generator[Any, None, list[Any]]:
        """``await group``: resume (main thread) once every future is done.

        Returns the futures, in the order they were added; never raises for
        a future that failed or was cancelled (look at their states).
        """
        while not self._is_done():
            waiter = asyncio.get_running_loop().create_future()

            def wake(waiter: asyncio.Future = waiter) -> None:
                if not waiter.done():
                    waiter.set_result(None)

            self._waiters.append(wake)
            try:
                yield from waiter.__await__()
            finally:
                if wake in self._waiters:
                    self._waiters.remove(wake)
        return list(self._book.members)

    # Property getters: current values ---------------------------------------

    def _get_total(self) -> int:
        return len(self._book.members)

    def _get_done_count(self) -> int:
        self._catch_up()
        return len(self._completed)

    def _get_failed_count(self) -> int:
        self._catch_up()
        return self._failed

    def _get_cancelled_count(self) -> int:
        self._catch_up()
        return self._cancelled

    def _get_done(self) -> bool:
        return self._is_done()

    def _get_fraction(self) -> float:
        total = len(self._book.members)
        if not total:
            return 1.0
        if self._is_done():
            return 1.0
        if self._book.reports:
            self._read_reports()
        if self._book.steps:
            self._read_steps()
        return min(1.0, (len(self._completed) + self._partial_sum) / total)

    def _get_futures(self) -> list[Any]:
        return list(self._book.members)

    # Private ----------------------------------------------------------------

    def _is_done(self) -> bool:
        self._catch_up()
        return len(self._completed) == len(self._book.members)

    def _catch_up(self) -> None:
        """Count every end so far: those the executors have yet to report
        (a final message being delivered now), then the group's list."""
        if self._sources:
            for source in list(self._sources):
                source.tally()
        if self._ended:
            self._count_ended()

    def _use_router(self, router: Any, future: Any) -> None:
        """Follow the executor that ``router`` delivers ``future`` for (once)."""
        source = source_of(router)
        book = self._book
        book.router = router
        book.source = source
        book.batched = source is not None and source.batched
        if source is not None and source not in self._sources:
            source.follow(self._listener)
            if book.batched:
                source.follow_batches(self._batch_listener)
            else:
                book.all_batched = False
            self._sources[source] = None
            if self._event_loop is None:
                self._use_event_loop(_event_loop_of(future))

    def _leave_sources(self) -> None:
        """Every future is done: stop following the executors."""
        for source in self._sources:
            source.unfollow(self._listener)
            source.unfollow(self._batch_listener)
        self._sources = {}
        book = self._book
        book.router = book.source = None
        book.batched, book.all_batched = False, True

    def _ended_in_batch(self, futures: list[Any], states: list[str]) -> None:
        """What an executor calls (main thread) with the futures that ended
        and their states: count this group's; notify after the batch."""
        book = self._book
        members, early = book.members, book.early
        completed = self._completed
        before = len(completed)
        failed = cancelled = 0
        for future, state in zip(futures, states, strict=True):
            if future in members:
                if early and future in early:
                    early.discard(future)  # counted when added
                    continue
                completed.append(future)
                if state is not COMPLETED:
                    if state == FAILED:
                        failed += 1
                    elif state == CANCELLED:
                        cancelled += 1
        if len(completed) == before:
            return
        if failed:
            self._failed += failed
        if cancelled:
            self._cancelled += cancelled
        if book.reports or self._partial:
            self._forget_fractions(completed[before:])
        self._counted()
        book.counted = True
        if not (book.all_batched and self._sources) and not book.scheduled:
            # Some executor followed says nothing at its batches' ends, or
            # the last end made the group stop following them (_counted).
            self._schedule()

    def _batch_ended(self) -> None:
        """What a batched executor calls (main thread) at the end of each
        batch: notify what its ends and its futures' reports changed."""
        book = self._book
        if book.counted or book.reports or book.steps:
            self._publish()

    def _use_event_loop(self, event_loop: Any) -> None:
        if event_loop is not None:
            self._event_loop = event_loop
            self._call_soon = soon_caller(event_loop)

    def _follow(self, future: Any, kind: int) -> None:
        """Hook the future's end and, where known, its fraction."""
        if kind & BASE:
            future.add_done_callback(_End(self, self._ended, future))
        else:
            future.on_trait_change(self._done_changed, "done")
        self._follow_fraction(future, kind)

    def _follow_fraction(self, future: Any, kind: int) -> None:
        """Hook a steps or progress future's fraction."""
        book = self._book
        if kind & STEPS:
            future.add_update_callback(book.updates.steps_updated)
            if future._complete:
                book.steps.add(future)  # read its progress so far
        elif kind & PROGRESS:
            future.add_update_callback(book.updates.reported)

    def _done_changed(self, future: Any, name: str, new: bool) -> None:
        if new and future in self._book.members:
            self._future_ended(future)

    def _future_ended(self, future: Any) -> None:
        if not self._ended:
            self._arm()
        self._ended.append(future)

    def _arm(self) -> None:
        """The first end of a batch: count and notify after the batch."""
        if not self._book.scheduled:
            self._schedule()

    def _read_steps(self) -> None:
        """Read the fraction of the steps futures updated since the last
        read, once each however many updates they had (main thread)."""
        steps = self._book.steps
        # Emptied in place: the hooks of batched futures hold this set.
        updated = list(steps)
        steps.clear()
        for future in updated:
            # A done one counts 1 (its partial fraction was dropped).
            fraction = future._running_fraction()
            if fraction is not None:
                self._set_partial(future, fraction)

    def _read_reports(self) -> None:
        reports = self._book.reports
        # Emptied in place: the hooks of batched futures hold this dict.
        kept = list(reports.items())
        reports.clear()
        for future, info in kept:
            value = read_progress(info)[0]
            if value is not None and not future.done:
                self._set_partial(future, value)

    def _set_partial(self, future: Any, value: float) -> None:
        partial = self._partial
        old = partial.get(future, 0.0)
        if value == old:
            return
        partial[future] = value
        self._partial_sum += value - old
        self._schedule()

    def _count_ended(self) -> None:
        """Count the futures that ended since the last count (main thread:
        once per batch, and whenever a count is read)."""
        # Emptied in place: the _End of each pending future holds this list.
        shared = self._ended
        ended = shared[:]
        shared.clear()
        states = states_of(ended)
        failed, cancelled = states.count(FAILED), states.count(CANCELLED)
        if failed:
            self._failed += failed
        if cancelled:
            self._cancelled += cancelled
        if self._book.reports or self._partial:
            self._forget_fractions(ended)
        self._completed.extend(ended)
        self._counted()

    def _forget_fractions(self, ended: list[Any]) -> None:
        """Drop what the group kept of the fractions of ``ended`` futures."""
        reports, partial = self._book.reports, self._partial
        for future in ended:
            if reports:
                reports.pop(future, None)
            if partial:
                old = partial.pop(future, None)
                if old is not None:
                    # Exactly 0 once nothing is partial: no drift left.
                    self._partial_sum = self._partial_sum - old if partial else 0.0

    def _counted(self) -> None:
        """After counting: once every future is done, stop following the
        executors and wake whoever awaits the group."""
        if len(self._completed) == len(self._book.members):
            if self._sources:
                self._leave_sources()
            if self._waiters:
                waiters, self._waiters = self._waiters, []
                for wake in waiters:
                    wake()

    def _schedule(self) -> None:
        """Notify after this batch (at once if no event loop is known)."""
        if self._book.scheduled:
            return
        call_soon = self._call_soon
        if call_soon is None:
            self._publish()
            return
        self._book.scheduled = True
        call_soon(self._publish)

    def _publish(self) -> None:
        """Count, and notify what changed since the last time (main thread)."""
        book = self._book
        # What the counts and reads below change is notified here: no
        # second call is asked for meanwhile.
        book.scheduled = True
        self._catch_up()
        if book.reports:
            self._read_reports()
        if book.steps:
            self._read_steps()
        book.scheduled = book.counted = False
        published = self._published
        if published is None:
            return  # still in __init__
        # What the getters would say, now that all is counted and read:
        # once per batch, so without their calls and catching up.
        total = len(self._book.members)
        completed = len(self._completed)
        done = completed == total
        fraction = 1.0 if done else min(1.0, (completed + self._partial_sum) / total)
        values = (total, completed, self._failed, self._cancelled, fraction, done)
        if values == published:
            return
        self._published = values
        notify = self.trait_property_changed  # type: ignore[attr-defined]
        for name, old, new in zip(_PUBLISHED, published, values, strict=True):
            if new != old:
                notify(name, old, new)

    def _drive(self, condition: Callable[[], bool], timeout: float | None) -> bool:
        """Run the event loop until ``condition()``; False after ``timeout`` s."""
        if condition():
            return True
        event_loop = self._event_loop
        if event_loop is None:
            raise RuntimeError(
                "this FutureGroup does not know which event loop delivers its "
                "futures' messages: make it with FutureGroup(futures, "
                "event_loop=<the executor's event loop>)"
            )
        inner = getattr(event_loop, "toolkit_event_loop", event_loop)
        if isinstance(inner, AsyncioEventLoop) and inner.event_loop.is_running():
            raise RuntimeError(
                "FutureGroup.wait() and as_completed() run the event loop "
                "themselves, and this asyncio loop is running already: in a "
                "coroutine, use 'await group' instead"
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        helper = event_loop.event_loop_helper()
        helper.init()
        try:
            while not condition():
                left = _WAIT_CHUNK if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    return False
                try:
                    helper.run_until(
                        self, "done_count", lambda group: condition(), min(left, _WAIT_CHUNK)
                    )
                except RuntimeError:
                    pass  # timed out: the loop above decides
            return True
        finally:
            helper.dispose()


class _Book:
    """What :meth:`FutureGroup.add` and each batch read: plain attributes,
    read faster than a HasTraits object's."""

    __slots__ = (
        "members", "early", "router", "source", "batched", "all_batched", "scheduled",
        "counted", "steps", "reports", "note_steps", "keep_report", "updates",
    )

    def __init__(self, group: FutureGroup) -> None:
        #: Every member (a key; futures hash by identity), in the order
        #: added.  An executor reports each of its futures' ends once:
        #: those of its reports that are members are counted then ...
        self.members: dict[Any, None] = {}
        #: ... except the members that were done when added (counted then).
        self.early: set[Any] = set()
        #: The router of the last future added, and its executor's EndSource
        #: (None if it has none): futures come from one executor, mostly.
        self.router: Any = None
        self.source: Any = None
        #: Whether that source tells the end of each batch (_batch_ended),
        #: and whether every source followed does.
        self.batched = False
        self.all_batched = True
        #: A call of _publish is on its way.
        self.scheduled = False
        #: Ends were counted since the last batch end.
        self.counted = False
        #: Steps futures updated since their fractions were last read.
        self.steps: set[Any] = set()
        #: Progress future -> its last report, not yet read.
        self.reports: dict[Any, Any] = {}
        #: The hooks of the futures of batched executors: C methods of the
        #: two containers above (made once: each read of a method makes a
        #: new bound method) ...
        self.note_steps = self.steps.add
        self.keep_report = self.reports.__setitem__
        #: ... and those of the others, which ask for a publication.
        self.updates = _Updates(group, self)


class _End:
    """The hook a group adds with a future's ``add_done_callback``.

    Called (no arguments) right after the future's ``done`` notification,
    once per future: it only appends the future to the group's list of
    ended futures, which the group counts once per batch (the first end of
    a batch asks for that).  One small object per future: a closure would
    be three (function and two cells), more work for the garbage
    collector (benchmarks/group.py).
    """

    __slots__ = ("group", "ended", "future")

    def __init__(self, group: FutureGroup, ended: list[Any], future: Any) -> None:
        self.group = group
        self.ended = ended
        self.future = future

    def __call__(self) -> None:
        ended = self.ended
        if not ended:
            self.group._arm()
        ended.append(self.future)


class _Updates:
    """What a group adds with ``add_update_callback`` to each of its steps
    and progress futures not followed through a batched executor: one
    object per group (the _Book's ``updates``), whose two bound methods are
    made once (an object per future would be walked by every full
    collection of the garbage collector, benchmarks/group.py).

    Each call only notes the future (and keeps a progress report); the
    group reads the fractions once per batch, however many updates the
    batch held (or when ``fraction`` is read).
    """

    __slots__ = ("group", "book", "steps_updated", "reported")

    def __init__(self, group: FutureGroup, book: _Book) -> None:
        self.group = group
        self.book = book
        #: Made once: each read of a method makes a new bound method.
        self.steps_updated = self._steps_updated
        self.reported = self._reported

    def _steps_updated(self, future: Any) -> None:
        book = self.book
        book.steps.add(future)
        if not book.scheduled:
            self.group._schedule()

    def _reported(self, future: Any, info: Any) -> None:
        book = self.book
        book.reports[future] = info
        if not book.scheduled:
            self.group._schedule()


def _longer_than(group: FutureGroup, length: int) -> Callable[[], bool]:
    def longer() -> bool:
        return group.done_count > length

    return longer


def _event_loop_of(future: Any) -> Any:
    """The event loop of the executor that made ``future``, if it says."""
    return event_loop_of(future)
