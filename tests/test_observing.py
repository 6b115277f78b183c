"""Observing a future is observing a ``HasTraits`` object: Traits' own
``observe``, with Traits' events, order, filters, dispatch, weak references
and errors, whichever way an observer was added or is removed."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest
import traits
from traits.api import (
    DelegatesTo,
    HasStrictTraits,
    HasTraits,
    Instance,
    Int,
    List,
    Property,
    observe,
    on_trait_change,
)
from traits.observation.api import (
    NotifierNotFound,
    pop_exception_handler,
    push_exception_handler,
    trait,
)

from offload._routing.protocol import RETURNED, STARTED
from offload.api import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXECUTING,
    WAITING,
    BaseFuture,
    CallFuture,
    IterationFuture,
    ProgressFuture,
)

#: (future class, trait names to observe on it).
OBSERVED = [
    (CallFuture, ["done", "state", "cancellable"]),
    (IterationFuture, ["result_event", "done"]),
    (ProgressFuture, ["progress", "state"]),
]
CASES = [(cls, name) for cls, names in OBSERVED for name in names]


def traits_observe(obj, handler, expression, **kwargs):
    """Traits' own ``HasTraits.observe``, called on the base class."""
    HasStrictTraits.observe(obj, handler, expression, **kwargs)


def fire(future, name):
    future.trait_property_changed(name, "old", "new")


class Recorder:
    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append((event.object, event.name, event.old, event.new))


def run_to_completion(future):
    """The messages of a task that returns, as the router delivers them."""
    future.receive((STARTED, None))
    future.receive((RETURNED, 42))


def test_observe_is_traits_own():
    # Nothing of offload's stands between a future and Traits' observers.
    assert BaseFuture.observe is HasTraits.observe


@pytest.mark.parametrize(("cls", "name"), CASES)
def test_added_either_way_removed_either_way(cls, name):
    for add, remove in [
        (cls.observe, traits_observe),
        (traits_observe, cls.observe),
        (cls.observe, cls.observe),
    ]:
        future, handler = cls(), Recorder()
        add(future, handler, name)
        fire(future, name)
        remove(future, handler, name, remove=True)
        fire(future, name)
        assert handler.events == [(future, name, "old", "new")]


def test_observers_run_in_the_order_they_were_added_whatever_the_way():
    order = []

    class Holder(HasTraits):
        future = Instance(CallFuture)

        @observe("future:done")
        def _graph_observer(self, event):
            order.append("graph")

    future = CallFuture()
    future.observe(lambda event: order.append("first"), "done")
    traits_observe(future, lambda event: order.append("second"), "done")
    holder = Holder(future=future)
    future.observe(lambda event: order.append("third"), "done")
    fire(future, "done")
    assert order == ["first", "second", "graph", "third"]
    del holder


class Plain(HasTraits):
    value = Int()


def test_the_event_is_the_one_traits_gives_any_has_traits_object():
    future, seen, plain, expected = CallFuture(), [], Plain(), []
    future.observe(seen.append, "done")
    fire(future, "done")
    plain.observe(expected.append, "value")
    plain.value = 1
    (event,), (other,) = seen, expected
    # TraitChangeEvent is public only from Traits 7: compared by type.
    assert type(event) is type(other)
    assert (event.object, event.name, event.old, event.new) == (future, "done", "old", "new")


def test_observers_of_state_done_and_cancellable_follow_a_task_that_returns():
    future, states, done, cancellable = CallFuture(), Recorder(), Recorder(), Recorder()
    future.observe(states, "state")
    future.observe(done, "done")
    future.observe(cancellable, "cancellable")
    run_to_completion(future)
    assert [event[2:] for event in states.events] == [
        (WAITING, EXECUTING), (EXECUTING, COMPLETED),
    ]
    assert done.events == [(future, "done", False, True)]
    assert cancellable.events == [(future, "cancellable", True, False)]


def test_done_fires_after_state_and_sees_the_final_state():
    future, seen = CallFuture(), []
    future.observe(lambda event: seen.append(("state", event.new)), "state")
    future.observe(lambda event: seen.append(("done", future.state, future.result)), "done")
    run_to_completion(future)
    assert seen == [("state", EXECUTING), ("state", COMPLETED), ("done", COMPLETED, 42)]


def test_observers_follow_a_cancelled_task():
    cancels = []
    future = CallFuture(_cancel=lambda: cancels.append(True))
    states = Recorder()
    future.observe(states, "state")
    assert future.cancel()
    assert cancels == [True]
    future.receive((STARTED, None))
    future.receive((RETURNED, 42))
    assert [event[3] for event in states.events] == [CANCELLING, CANCELLED]


def test_the_same_handler_twice_needs_two_removals():
    future, handler = CallFuture(), Recorder()
    future.observe(handler, "done")
    future.observe(handler, "done")
    future.observe(handler, "done", remove=True)
    fire(future, "done")
    assert len(handler.events) == 1
    future.observe(handler, "done", remove=True)
    fire(future, "done")
    assert len(handler.events) == 1
    with pytest.raises(NotifierNotFound):
        future.observe(handler, "done", remove=True)


def test_removing_what_was_never_added_is_traits_error_and_changes_nothing():
    future, kept = CallFuture(), Recorder()
    future.observe(kept, "done")
    with pytest.raises(NotifierNotFound):
        future.observe(Recorder(), "done", remove=True)
    fire(future, "done")
    assert len(kept.events) == 1


def test_an_unknown_trait_is_traits_error():
    with pytest.raises(ValueError, match="Trait named 'dnoe' not found"):
        CallFuture().observe(Recorder(), "dnoe")


def test_a_bad_dispatch_is_traits_error():
    with pytest.raises(KeyError):
        CallFuture().observe(Recorder(), "done", dispatch="sometime")


def test_a_non_callable_handler_is_traits_error():
    future = CallFuture()
    with pytest.raises(ValueError, match="handler must be a callable"):
        future.observe(None, "done")


@pytest.mark.parametrize(
    "expression",
    ["[state, done]", trait("done"), ["state", "done"]],
    ids=["list-in-string", "expression-object", "list"],
)
def test_other_expressions_work(expression):
    future, handler = CallFuture(), Recorder()
    future.observe(handler, expression)
    fire(future, "done")
    future.observe(handler, expression, remove=True)
    fire(future, "done")
    assert handler.events == [(future, "done", "old", "new")]


def test_keywords_as_traits_names_them():
    future, handler = CallFuture(), Recorder()
    future.observe(handler=handler, expression="done")
    fire(future, "done")
    future.observe(handler=handler, expression="done", remove=True)
    fire(future, "done")
    assert len(handler.events) == 1
    with pytest.raises(TypeError):
        future.observe(handler, "done", True)  # remove is keyword-only in Traits


def test_a_method_handler_is_held_weakly():
    future = CallFuture()

    class Owner:
        def __init__(self):
            self.events = []

        def on_done(self, event):
            self.events.append(event.new)

    owner = Owner()
    events = owner.events
    future.observe(owner.on_done, "done")
    fire(future, "done")
    assert events == ["new"]
    del owner
    gc.collect()
    fire(future, "done")  # the notifier is disabled, not an error
    assert events == ["new"]


def test_an_event_fires_for_every_value_even_equal_ones():
    future, handler = ProgressFuture(), Recorder()
    future.observe(handler, "progress")
    future.progress = 1
    future.progress = 1
    assert [event[3] for event in handler.events] == [1, 1]


@pytest.mark.skipif(
    int(traits.__version__.split(".")[0]) < 7,
    reason="Traits runs a coroutine function observer as a task from 7.0",
)
def test_an_async_handler_is_run_as_a_task():
    future, seen = CallFuture(), []

    async def handler(event):
        seen.append(event.new)

    async def main():
        future.observe(handler, "done")
        fire(future, "done")
        assert seen == []  # scheduled, not yet run
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0)

    asyncio.run(main())
    assert seen == ["new"]


class CountingFuture(BaseFuture):
    """A custom future with a plain trait of its own."""

    count = Int()
    history = List()

    @observe("state")
    def _record_state(self, event):
        self.history.append(event.new)


def test_a_custom_futures_own_traits_and_observers_work():
    future, handler = CountingFuture(), Recorder()
    future.observe(handler, "count")
    future.count = 5
    future.count = 5  # equal: Traits drops it
    run_to_completion(future)
    assert handler.events == [(future, "count", 0, 5)]
    assert future.history == [EXECUTING, COMPLETED]


class ListeningFuture(CallFuture):
    seen = Int(0)

    @on_trait_change("state")
    def _count_state(self):
        self.seen += 1


class PostInitObservingFuture(CallFuture):
    seen = Int(0)

    @observe("state", post_init=True)
    def _count_state(self, event):
        self.seen += 1


class TraitsInitFuture(CallFuture):
    seen = Int(0)

    def traits_init(self):
        self.seen = 100


@pytest.mark.parametrize(
    ("cls", "expected_seen"),
    [(ListeningFuture, 2), (PostInitObservingFuture, 2), (TraitsInitFuture, 100)],
)
def test_a_subclass_of_a_built_in_future_sets_itself_up(cls, expected_seen):
    future = cls(_cancel=lambda: None)
    assert future.traits_inited()
    run_to_completion(future)
    assert (future.state, future.seen) == (COMPLETED, expected_seen)


class Source(HasTraits):
    value = Int(0)


class DependentFuture(CallFuture):
    seen = Int(0)
    doubled = Property(Int, observe="seen")
    tripled = Property(Int, depends_on="seen")
    source = Instance(Source, ())
    value = DelegatesTo("source")

    def _get_doubled(self):
        return 2 * self.seen

    def _get_tripled(self):
        return 3 * self.seen


def test_a_subclass_with_dependent_properties_and_a_delegate_notifies():
    future, changes = DependentFuture(_cancel=lambda: None), Recorder()
    for name in ["doubled", "tripled", "value"]:
        future.observe(changes, name)
    future.seen = 3
    future.source.value = 7
    assert sorted((event[1], event[3]) for event in changes.events) == [
        ("doubled", 6), ("tripled", 9), ("value", 7),
    ]


def test_an_instance_trait_can_be_observed():
    future, handler = CallFuture(), Recorder()
    future.add_trait("extra", Int())
    future.observe(handler, "extra")
    future.extra = 3
    future.observe(handler, "extra", remove=True)
    future.extra = 4
    assert handler.events == [(future, "extra", 0, 3)]


@pytest.mark.parametrize("reraise", [False, True])
def test_an_error_in_a_handler_goes_to_traits_exception_handler(reraise):
    future, after = CallFuture(), Recorder()

    def broken(event):
        raise ZeroDivisionError("from a handler")

    future.observe(broken, "done")
    future.observe(after, "done")
    seen = []
    push_exception_handler(handler=seen.append, reraise_exceptions=reraise)
    try:
        if reraise:
            with pytest.raises(ZeroDivisionError, match="from a handler"):
                fire(future, "done")
        else:
            fire(future, "done")
    finally:
        pop_exception_handler()
    assert [(event.object, event.name, event.new) for event in seen] == [(future, "done", "new")]
    # Traits goes on to the next handler unless told to re-raise.
    assert len(after.events) == (0 if reraise else 1)


def test_handlers_added_or_removed_during_a_change_count_from_the_next():
    future, late, removed = CallFuture(), Recorder(), Recorder()

    def changer(event):
        future.observe(late, "done")
        future.observe(removed, "done", remove=True)

    future.observe(changer, "done")
    future.observe(removed, "done")
    fire(future, "done")
    assert (len(late.events), len(removed.events)) == (0, 1)
    future.observe(changer, "done", remove=True)
    fire(future, "done")
    assert (len(late.events), len(removed.events)) == (1, 1)


def test_an_observed_future_is_freed_once_dropped():
    future = CallFuture()
    future.observe(lambda event: None, "done")
    future.observe(Recorder(), "state")
    traits_observe(future, Recorder(), "cancellable")
    gone = weakref.ref(future)
    del future
    gc.collect()
    assert gone() is None
