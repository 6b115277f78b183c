"""``new_future``: the built-in task kinds' futures, made without ``__init__``'s
hooks, are the futures ``cls(_cancel=...)`` makes; any class that has
something for those hooks to do is made the ordinary way."""

from __future__ import annotations

import pytest
from traits.api import (
    DelegatesTo,
    HasTraits,
    Instance,
    Int,
    Property,
    TraitError,
    observe,
    on_trait_change,
)

from offload._futures.base import new_future
from offload._routing.protocol import RETURNED, STARTED
from offload.api import (
    CANCELLING,
    COMPLETED,
    EXECUTING,
    WAITING,
    CallFuture,
    IterationFuture,
    ProgressFuture,
)


@pytest.mark.parametrize("cls", [CallFuture, IterationFuture, ProgressFuture])
def test_a_built_in_future_made_fast_is_an_initialised_future(cls):
    calls = []
    future = new_future(cls, lambda: calls.append("cancel"))
    assert type(future) is cls
    assert future.traits_inited()
    assert (future.state, future.cancellable, future.done) == (WAITING, True, False)
    changes = []
    future.observe(lambda event: changes.append(event.new), "state")
    assert future.cancel()
    assert calls == ["cancel"]
    assert changes == [CANCELLING]


def test_a_built_in_future_made_fast_rejects_a_non_callable_cancel():
    with pytest.raises(TraitError, match="_cancel"):
        new_future(CallFuture, 42)  # type: ignore[arg-type]


def test_a_built_in_future_made_fast_gets_no_instance_traits_of_its_own():
    # __new__ plus one set: the same (empty) instance dict as __init__ makes.
    fast = new_future(CallFuture, lambda: None)
    ordinary = CallFuture(_cancel=lambda: None)
    assert fast.__dict__.keys() == ordinary.__dict__.keys()


class ObservingFuture(CallFuture):
    seen = Int(0)

    @observe("state")
    def _count_state(self, event):
        self.seen += 1


class PostInitObservingFuture(CallFuture):
    seen = Int(0)

    @observe("state", post_init=True)
    def _count_state(self, event):
        self.seen += 1


class ListeningFuture(CallFuture):
    seen = Int(0)

    @on_trait_change("state")
    def _count_state(self):
        self.seen += 1


class TraitsInitFuture(CallFuture):
    seen = Int(0)

    def traits_init(self):
        self.seen = 100


class InitFuture(CallFuture):
    seen = Int(0)

    def __init__(self, **traits):
        super().__init__(**traits)
        self.seen = 100


class NewFuture(CallFuture):
    seen = Int(0)

    def __new__(cls, *args, **traits):
        future = super().__new__(cls)
        future.seen = 100
        return future


class Source(HasTraits):
    value = Int(0)


class PropertyObservingFuture(CallFuture):
    seen = Int(0)
    doubled = Property(Int, observe="seen")

    def _get_doubled(self):
        return 2 * self.seen


class DependsOnFuture(CallFuture):
    seen = Int(0)
    doubled = Property(Int, depends_on="seen")

    def _get_doubled(self):
        return 2 * self.seen


class DelegatingFuture(CallFuture):
    source = Instance(Source, ())
    value = DelegatesTo("source")


@pytest.mark.parametrize("cls", [PropertyObservingFuture, DependsOnFuture])
def test_a_subclass_with_a_property_that_depends_on_a_trait_still_notifies(cls):
    future = new_future(cls, lambda: None)
    changes = []
    future.observe(lambda event: changes.append(event.new), "doubled")
    future.seen = 3
    assert changes == [6]


def test_a_subclass_with_a_delegate_still_follows_its_source():
    future = new_future(DelegatingFuture, lambda: None)
    changes = []
    future.observe(lambda event: changes.append(event.new), "value")
    future.source.value = 7
    assert (changes, future.value) == ([7], 7)


@pytest.mark.parametrize(
    ("cls", "expected_seen"),
    [
        (ObservingFuture, 2),
        (PostInitObservingFuture, 2),
        (ListeningFuture, 2),
        (TraitsInitFuture, 100),
        (InitFuture, 100),
        (NewFuture, 100),
    ],
)
def test_a_subclass_with_something_to_set_up_is_made_the_ordinary_way(cls, expected_seen):
    future = new_future(cls, lambda: None)
    assert future.traits_inited()
    future.receive((STARTED, None))
    future.receive((RETURNED, "result"))
    assert future.state == COMPLETED
    assert future.seen == expected_seen


def test_a_plain_subclass_is_made_fast_and_behaves_the_same():
    class PlainFuture(CallFuture):
        extra = Int(3)

    future = new_future(PlainFuture, lambda: None)
    assert future.traits_inited()
    assert future.extra == 3
    states = []
    future.observe(lambda event: states.append(event.new), "state")
    future.receive((STARTED, None))
    future.receive((RETURNED, "result"))
    assert states == [EXECUTING, COMPLETED]
    assert future.result == "result"


def test_a_class_with_a_custom_metaclass_call_is_made_the_ordinary_way():
    made = []

    class CountingMeta(type(HasTraits)):  # type: ignore[misc]
        def __call__(cls, *args, **traits):
            made.append(cls)
            return super().__call__(*args, **traits)

    class CountedFuture(CallFuture, metaclass=CountingMeta):
        pass

    future = new_future(CountedFuture, lambda: None)
    assert made == [CountedFuture]
    assert future.state == WAITING
