"""``future.observe``: the shorter paths must behave as Traits' own.

On an Event or Property trait, the lean path gives each handler Traits'
events, filter, dispatch, weak references and errors through one notifier
of offload's own; on any other trait (and on those, with the lean path
turned off), the exact path makes exactly Traits' notifiers, so that an
observer it adds is removed by Traits' own ``HasTraits.observe(...,
remove=True)`` and the other way round.  Every error is Traits' own.
"""

from __future__ import annotations

import functools
import gc

import pytest
from traits.api import HasStrictTraits, Int, Uninitialized
from traits.observation.api import NotifierNotFound, TraitChangeEvent, dispatch_same, trait

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


#: Every path: the lean one (taken on Event and Property traits), the
#: exact path's inline steps for Traits' own observers, and its steps
#: through the observer interface (a Traits release with other observer
#: types, where the lean path is not taken either).
ALL_PATHS = pytest.mark.parametrize("steps", ["lean", "direct", "general"], indirect=True)
#: The exact path's two ways (about the notifiers it makes).
EXACT_PATHS = pytest.mark.parametrize("steps", ["direct", "general"], indirect=True)


@pytest.fixture(autouse=True)
def steps(request, monkeypatch):
    """Which path ``future.observe`` takes; the lean path unless a test is
    parametrized with ALL_PATHS or EXACT_PATHS."""
    path = getattr(request, "param", "lean")
    monkeypatch.setattr(observing, "_plans", {})
    if path != "lean":
        monkeypatch.setattr(observing, "_lean", False)
    if path == "general":
        monkeypatch.setattr(observing, "_direct_types", None)
    return path


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


@ALL_PATHS
@pytest.mark.parametrize(("cls", "name"), CASES)
def test_the_short_path_is_taken_for_one_trait_name(cls, name):
    # If a Traits release changes its observers so that the short path no
    # longer applies, this fails instead of the speed quietly going.
    assert add_or_remove(cls(), Recorder(), name, False) is True


@EXACT_PATHS
@pytest.mark.parametrize(("cls", "name"), CASES)
def test_the_inline_steps_are_taken_for_traits_own_observers(cls, name, steps):
    add_or_remove(cls(), Recorder(), name, False)
    assert observing._plans[name][3] is (steps == "direct")


@EXACT_PATHS
@pytest.mark.parametrize(("cls", "name"), CASES)
def test_same_notifiers_as_traits_makes(cls, name):
    ours, theirs = cls(), cls()
    ours.observe(Recorder(), name)
    traits_observe(theirs, Recorder(), name)
    assert notifier_layout(ours, name) == notifier_layout(theirs, name)
    assert notifier_layout(ours, name) != notifier_layout(cls(), name)


@EXACT_PATHS
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


@ALL_PATHS
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


@ALL_PATHS
@pytest.mark.parametrize("by_attributes", [True, False])
def test_the_event_is_the_one_traits_gives(by_attributes, monkeypatch):
    monkeypatch.setattr(observing, "_EVENT_BY_ATTRIBUTES", by_attributes)
    future, ours, theirs = CallFuture(), [], []
    future.observe(ours.append, "done")
    traits_observe(future, theirs.append, "done")
    fire(future, "done")
    ((event,), (expected,)) = ours, theirs
    assert type(event) is TraitChangeEvent
    assert vars(event) == vars(expected) == {
        "object": future, "name": "done", "old": "old", "new": "new"}
    assert repr(event) == repr(expected)


def test_this_traits_event_may_be_made_by_its_attributes():
    assert observing._event_is_its_attributes()


@ALL_PATHS
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


@ALL_PATHS
def test_removing_what_was_never_added_is_traits_error_and_changes_nothing():
    future, kept = CallFuture(), Recorder()
    future.observe(kept, "done")
    before = notifier_layout(future, "done")
    with pytest.raises(NotifierNotFound):
        future.observe(Recorder(), "done", remove=True)
    assert notifier_layout(future, "done") == before
    fire(future, "done")
    assert len(kept.events) == 1


@ALL_PATHS
def test_an_unknown_trait_is_traits_error():
    with pytest.raises(ValueError, match="Trait named 'dnoe' not found"):
        CallFuture().observe(Recorder(), "dnoe")
    with pytest.raises(ValueError, match="Trait named 'dnoe' not found"):
        traits_observe(CallFuture(), Recorder(), "dnoe")


@ALL_PATHS
def test_a_bad_dispatch_is_traits_error():
    with pytest.raises(KeyError):
        CallFuture().observe(Recorder(), "done", dispatch="sometime")


@ALL_PATHS
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


@ALL_PATHS
def test_a_badly_formed_expression_is_traits_error():
    with pytest.raises(Exception) as ours:
        CallFuture().observe(Recorder(), "done..")
    with pytest.raises(Exception) as theirs:
        traits_observe(CallFuture(), Recorder(), "done..")
    assert type(ours.value) is type(theirs.value)


@ALL_PATHS
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


@EXACT_PATHS
@pytest.mark.parametrize(("cls", "name"), CASES)
def test_event_and_property_traits_get_the_cheaper_filter_and_dispatch(cls, name):
    # The speed-ups of observed progress messages: fails if they are gone.
    future = cls()
    future.observe(Recorder(), name)
    notifier = handler_notifier(future, name)
    assert notifier.prevent_event is _old_is_uninitialized
    assert notifier.dispatcher is _PLAIN_DISPATCH


@ALL_PATHS
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


@ALL_PATHS
def test_an_event_fires_for_every_value_even_equal_ones():
    future, handler = ProgressFuture(), Recorder()
    future.observe(handler, "progress")
    future.progress = 1
    future.progress = 1
    assert [event[3] for event in handler.events] == [1, 1]


@ALL_PATHS
def test_an_async_handler_is_run_as_a_task_as_traits_does():
    import asyncio

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


@ALL_PATHS
def test_a_non_callable_handler_is_traits_error_and_adds_nothing():
    future = CallFuture()
    untouched = notifier_layout(future, "done")
    with pytest.raises(ValueError, match="handler must be a callable"):
        future.observe(None, "done")
    assert notifier_layout(future, "done") == untouched


@ALL_PATHS
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


@EXACT_PATHS
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


@ALL_PATHS
def test_an_instance_trait_is_observed_by_the_short_path_too():
    future, handler = CallFuture(), Recorder()
    future.add_trait("extra", Int())
    future.observe(handler, "extra")
    future.extra = 3
    future.observe(handler, "extra", remove=True)
    future.extra = 4
    assert handler.events == [(future, "extra", 0, 3)]


# The lean path ---------------------------------------------------------------


def lean_handlers(obj, name):
    """The lean path's notifiers on ``name``: none, or one."""
    return [
        n for n in obj._trait(name, 2)._notifiers(True)
        if isinstance(n, observing._Handlers)
    ]


@pytest.mark.parametrize(("cls", "name"), CASES)
def test_the_lean_path_puts_one_notifier_of_its_own_and_nothing_else(cls, name):
    future, first, second = cls(), Recorder(), Recorder()
    untouched = notifier_layout(future, name)
    future.observe(first, name)
    future.observe(second, name)
    (handlers,) = lean_handlers(future, name)
    assert [entry.handler for entry in handlers.entries] == [first, second]
    # No trait_added maintainer, no Traits notifier.
    assert notifier_layout(future, name)[1] == untouched[1]
    assert len(notifier_layout(future, name)[0]) == len(untouched[0]) + 1
    fire(future, name)
    assert first.events == second.events == [(future, name, "old", "new")]
    future.observe(first, name, remove=True)
    future.observe(second, name, remove=True)
    assert notifier_layout(future, name) == untouched


@pytest.mark.parametrize(("cls", "name"), CASES)
def test_added_by_traits_removed_by_the_future_but_not_the_other_way(cls, name):
    future, handler = cls(), Recorder()
    untouched = notifier_layout(future, name)
    traits_observe(future, handler, name)
    future.observe(handler, name, remove=True)
    assert notifier_layout(future, name) == untouched
    # Traits' own path does not see the lean path's handlers (documented):
    # it says so and changes nothing.
    future.observe(handler, name)
    with pytest.raises(NotifierNotFound):
        traits_observe(future, handler, name, remove=True)
    fire(future, name)
    assert handler.events == [(future, name, "old", "new")]


def test_the_lean_path_runs_through_the_future_state_machine():
    from offload._routing.protocol import RETURNED, STARTED

    future, states, done = CallFuture(), Recorder(), Recorder()
    future.observe(states, "state")
    future.observe(done, "done")
    future.receive((STARTED, None))
    future.receive((RETURNED, 42))
    assert [event[2:] for event in states.events] == [
        ("waiting", "executing"), ("executing", "completed"),
    ]
    assert done.events == [(future, "done", False, True)]


@ALL_PATHS
@pytest.mark.parametrize("reraise", [False, True])
def test_an_error_in_a_handler_goes_to_traits_exception_handler(reraise):
    from traits.observation.api import pop_exception_handler, push_exception_handler

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


@ALL_PATHS
def test_handlers_added_or_removed_during_a_change_count_from_the_next():
    future, late, removed = CallFuture(), Recorder(), Recorder()

    def changer(event):
        future.observe(late, "done")
        future.observe(removed, "done", remove=True)

    future.observe(changer, "done")
    future.observe(removed, "done")
    fire(future, "done")
    # As Traits: the change in progress calls the handlers as they were.
    assert (len(late.events), len(removed.events)) == (0, 1)
    future.observe(changer, "done", remove=True)
    fire(future, "done")
    assert (len(late.events), len(removed.events)) == (1, 1)


def test_a_change_from_an_uninitialized_value_is_dropped_as_traits_does():
    future, handler = CallFuture(), Recorder()
    future.observe(handler, "state")
    future.trait_property_changed("state", Uninitialized, "x")
    future.trait_property_changed("state", "x", "x")
    assert handler.events == [(future, "state", "x", "x")]


@pytest.mark.parametrize(
    "handler",
    [_plain, _coroutine, _Handlers().method, _Handlers().coroutine_method, _Handlers(),
     functools.partial(_coroutine), functools.partial(_plain), _marked()],
    ids=["function", "coroutine", "method", "coroutine-method", "callable",
         "partial-coroutine", "partial", "marked"],
)
def test_the_lean_path_calls_directly_exactly_when_inspect_says_not_a_coroutine(handler):
    import inspect

    future = CallFuture()
    future.observe(handler, "done")
    ((entry,),) = [handlers.entries for handlers in lean_handlers(future, "done")]
    assert entry.plain is not inspect.iscoroutinefunction(handler)


def test_a_lean_observed_future_is_freed_once_dropped():
    import weakref

    future = CallFuture()
    future.observe(lambda event: None, "done")
    future.observe(Recorder(), "state")
    gone = weakref.ref(future)
    del future
    gc.collect()
    assert gone() is None
