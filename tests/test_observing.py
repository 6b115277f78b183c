"""``future.observe``: the short path must make exactly Traits' notifiers.

An observer added by offload's short path is removed by Traits' own
``HasTraits.observe(..., remove=True)`` and the other way round, fires the
same events, and every error is Traits' own.
"""

from __future__ import annotations

import functools
import gc

import pytest
from traits.api import HasStrictTraits, Int, Uninitialized
from traits.observation.api import NotifierNotFound, dispatch_same, trait

from offload._futures import observing
from offload._futures.observing import _PLAIN_DISPATCH, _old_is_uninitialized, add_or_remove
from offload.api import BaseFuture, CallFuture, IterationFuture, ProgressFuture

#: (future class, trait names to observe on it).
OBSERVED = [
    (CallFuture, ["done", "state", "cancellable"]),
    (IterationFuture, ["result_event", "done"]),
    (ProgressFuture, ["progress", "state"]),
]
CASES = [(cls, name) for cls, names in OBSERVED for name in names]


@pytest.fixture(autouse=True, params=["direct", "general"])
def steps(request, monkeypatch):
    """Every test twice: with the short path's inline steps for Traits' own
    observers, and with the steps through the observer interface that it
    takes for any other (a Traits release with other observer types)."""
    monkeypatch.setattr(observing, "_plans", {})
    if request.param == "general":
        monkeypatch.setattr(observing, "_direct_types", None)
    return request.param


def traits_observe(obj, handler, expression, **kwargs):
    """Traits' own path, bypassing offload's override."""
    HasStrictTraits.observe(obj, handler, expression, **kwargs)


def notifier_layout(obj, name):
    """What is attached where: the notifiers' types on the two traits."""
    return (
        [type(n).__name__ for n in obj._trait(name, 2)._notifiers(True)],
        [type(n).__name__ for n in obj._trait("trait_added", 2)._notifiers(True)],
    )


def fire(future, name):
    future.trait_property_changed(name, "old", "new")


class Recorder:
    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append((event.object, event.name, event.old, event.new))


@pytest.mark.parametrize(("cls", "name"), CASES)
def test_the_short_path_is_taken_for_one_trait_name(cls, name):
    # If a Traits release changes its observers so that the short path no
    # longer applies, this fails instead of the speed quietly going.
    assert add_or_remove(cls(), Recorder(), name, False) is True


@pytest.mark.parametrize(("cls", "name"), CASES)
def test_the_inline_steps_are_taken_for_traits_own_observers(cls, name, steps):
    add_or_remove(cls(), Recorder(), name, False)
    assert observing._plans[name][3] is (steps == "direct")


@pytest.mark.parametrize(("cls", "name"), CASES)
def test_same_notifiers_as_traits_makes(cls, name):
    ours, theirs = cls(), cls()
    ours.observe(Recorder(), name)
    traits_observe(theirs, Recorder(), name)
    assert notifier_layout(ours, name) == notifier_layout(theirs, name)
    assert notifier_layout(ours, name) != notifier_layout(cls(), name)


@pytest.mark.parametrize(("cls", "name"), CASES)
def test_added_here_removed_by_traits_and_the_other_way(cls, name):
    untouched = notifier_layout(cls(), name)
    for add, remove in [(None, traits_observe), (traits_observe, None)]:
        future, handler = cls(), Recorder()
        (add or type(future).observe)(future, handler, name)
        fire(future, name)
        (remove or type(future).observe)(future, handler, name, remove=True)
        fire(future, name)
        assert handler.events == [(future, name, "old", "new")]
        assert notifier_layout(future, name) == untouched


def test_events_are_traits_events_in_order_with_other_observers():
    future, first, second = CallFuture(), Recorder(), Recorder()
    traits_observe(future, first, "done")
    future.observe(second, "done")
    order = []
    future.observe(lambda event: order.append("third"), "done")
    traits_observe(future, lambda event: order.append("fourth"), "done")
    fire(future, "done")
    assert first.events == second.events == [(future, "done", "old", "new")]
    assert order == ["third", "fourth"]


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
    before = notifier_layout(future, "done")
    with pytest.raises(NotifierNotFound):
        future.observe(Recorder(), "done", remove=True)
    assert notifier_layout(future, "done") == before
    fire(future, "done")
    assert len(kept.events) == 1


def test_an_unknown_trait_is_traits_error():
    with pytest.raises(ValueError, match="Trait named 'dnoe' not found"):
        CallFuture().observe(Recorder(), "dnoe")
    with pytest.raises(ValueError, match="Trait named 'dnoe' not found"):
        traits_observe(CallFuture(), Recorder(), "dnoe")


def test_a_bad_dispatch_is_traits_error():
    with pytest.raises(KeyError):
        CallFuture().observe(Recorder(), "done", dispatch="sometime")


@pytest.mark.parametrize(
    "expression",
    ["[state, done]", trait("done"), ["state", "done"], "state,done".split(",")],
    ids=["list-in-string", "expression-object", "list", "split"],
)
def test_other_expressions_take_traits_path_and_work(expression):
    future, handler = CallFuture(), Recorder()
    future.observe(handler, expression)
    fire(future, "done")
    future.observe(handler, expression, remove=True)
    fire(future, "done")
    assert handler.events == [(future, "done", "old", "new")]


def test_a_badly_formed_expression_is_traits_error():
    with pytest.raises(Exception) as ours:
        CallFuture().observe(Recorder(), "done..")
    with pytest.raises(Exception) as theirs:
        traits_observe(CallFuture(), Recorder(), "done..")
    assert type(ours.value) is type(theirs.value)


def test_a_method_handler_is_held_weakly_as_traits_does():
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


class CountingFuture(BaseFuture):
    """A custom future with a plain trait, whose equal values Traits drops."""

    count = Int()


def handler_notifier(obj, name):
    (notifier,) = [
        n for n in obj._trait(name, 2)._notifiers(True) if type(n).__name__ == "TraitEventNotifier"
    ]
    return notifier


@pytest.mark.parametrize(("cls", "name"), CASES)
def test_event_and_property_traits_get_the_cheaper_filter_and_dispatch(cls, name):
    # The speed-ups of observed progress messages: fails if they are gone.
    future = cls()
    future.observe(Recorder(), name)
    notifier = handler_notifier(future, name)
    assert notifier.prevent_event is _old_is_uninitialized
    assert notifier.dispatcher is _PLAIN_DISPATCH


@pytest.mark.parametrize("observe", ["short", "traits"])
def test_changes_dropped_and_kept_as_traits_does(observe):
    future, handler = CountingFuture(), Recorder()
    add = CountingFuture.observe if observe == "short" else traits_observe
    add(future, handler, "count")
    add(future, handler, "state")
    assert handler_notifier(future, "count").prevent_event is not _old_is_uninitialized
    future.trait_property_changed("count", 3, 3)  # equal: dropped
    future.trait_property_changed("count", Uninitialized, 3)  # from nothing: dropped
    future.trait_property_changed("state", Uninitialized, "x")  # from nothing: dropped
    future.trait_property_changed("state", "x", "x")  # a property: kept
    future.count = 5
    assert handler.events == [
        (future, "state", "x", "x"),
        (future, "count", 0, 5),
    ]


def test_an_event_fires_for_every_value_even_equal_ones():
    future, handler = ProgressFuture(), Recorder()
    future.observe(handler, "progress")
    future.progress = 1
    future.progress = 1
    assert [event[3] for event in handler.events] == [1, 1]


def test_an_async_handler_is_run_as_a_task_as_traits_does():
    import asyncio

    future, seen = CallFuture(), []

    async def handler(event):
        seen.append(event.new)

    async def main():
        future.observe(handler, "done")
        assert handler_notifier(future, "done").dispatcher is dispatch_same
        fire(future, "done")
        assert seen == []  # scheduled, not yet run
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0)

    asyncio.run(main())
    assert seen == ["new"]


def test_a_non_callable_handler_is_traits_error_and_adds_nothing():
    future = CallFuture()
    untouched = notifier_layout(future, "done")
    with pytest.raises(ValueError, match="handler must be a callable"):
        future.observe(None, "done")
    assert notifier_layout(future, "done") == untouched


def test_keywords_as_traits_names_them():
    future, handler = CallFuture(), Recorder()
    future.observe(handler=handler, expression="done")
    fire(future, "done")
    future.observe(handler=handler, expression="done", remove=True)
    fire(future, "done")
    assert len(handler.events) == 1
    with pytest.raises(TypeError):
        future.observe(handler, "done", True)  # remove is keyword-only in Traits


def _plain(event):
    pass


async def _coroutine(event):
    pass


class _Handlers:
    def method(self, event):
        pass

    async def coroutine_method(self, event):
        pass

    def __call__(self, event):
        pass


def _marked():
    """A plain function that inspect is told to take for a coroutine one."""
    import inspect

    def handler(event):
        pass

    mark = getattr(inspect, "markcoroutinefunction", None)  # Python >= 3.12
    return mark(handler) if mark is not None else _coroutine


@pytest.mark.parametrize(
    "handler",
    [
        _plain,
        _coroutine,
        _Handlers().method,
        _Handlers().coroutine_method,
        _Handlers(),
        functools.partial(_coroutine),
        functools.partial(_plain),
        _marked(),
    ],
    ids=["function", "coroutine", "method", "coroutine-method", "callable",
         "partial-coroutine", "partial", "marked"],
)
def test_the_dispatch_is_plain_exactly_when_inspect_says_not_a_coroutine(handler):
    import inspect

    future = CallFuture()
    future.observe(handler, "done")
    dispatcher = handler_notifier(future, "done").dispatcher
    if inspect.iscoroutinefunction(handler):
        assert dispatcher is dispatch_same
    else:
        assert dispatcher is _PLAIN_DISPATCH


def test_an_instance_trait_is_observed_by_the_short_path_too():
    future, handler = CallFuture(), Recorder()
    future.add_trait("extra", Int())
    future.observe(handler, "extra")
    future.extra = 3
    future.observe(handler, "extra", remove=True)
    future.extra = 4
    assert handler.events == [(future, "extra", 0, 3)]
