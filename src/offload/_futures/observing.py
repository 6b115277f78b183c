"""Shorter paths through Traits' ``observe`` for the commonest call.

``future.observe(handler, "done")`` costs ~12-18 µs in Traits 7 (~25-36
µs on the main thread of a round trip, with cold caches), more than the
rest of a submit: the general graph walker builds a step list, recurses
through keyword calls and records every step for an undo, and the walk
ends in two notifiers (the handler's on the named trait, and a maintainer
on ``trait_added``), each with its weak references, on two instance traits
made for them.  For an expression that names one trait with no children
(``"done"``, ``"state"``, ``"progress"``), two shorter paths:

- On an **Event or Property trait** (every trait a future fires itself:
  ``state``, ``done``, ``cancellable``, ``progress``, ``result_event``),
  the *lean* path: one notifier of offload's own, :class:`_Handlers`, on
  that trait of that future, calls every handler observed through it, in
  the order they came, with the very event, filter, dispatch, weak
  reference to a method and error handling that Traits' notifier gives
  (~5 µs to add on a fresh future instead of ~10; cheaper to fire and to
  free).  Adding a
  handler already there counts it, as Traits does; removal finds it here.
  What differs from Traits: Traits' *own* path cannot see these handlers,
  so ``HasTraits.observe(future, handler, "done", remove=True)``, called
  on the base class to bypass the future's ``observe``, raises
  ``NotifierNotFound`` (``future.observe`` finds handlers added either
  way); and they run at the place of the first one among the trait's
  other notifiers.
- On any other trait, the *exact* path: :func:`add_or_remove` makes or
  removes exactly Traits' two notifiers, through the same public observer
  interface Traits uses (``iter_observables``, ``get_notifier``,
  ``get_maintainer``, ``iter_extra_graphs``), so that they are removed by
  Traits' own ``observe(..., remove=True)`` and the other way round.  For
  a handler that is not a coroutine function, it gives the notifier a
  cheaper equivalent of Traits' same-thread dispatcher (see
  :class:`_PlainDispatch`).

Any other expression, dispatch, or anything unexpected takes Traits' path.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from inspect import CO_COROUTINE, iscoroutinefunction
from types import FunctionType, MethodType
from typing import Any

from traits.api import Uninitialized  # type: ignore[attr-defined]
from traits.observation.api import TraitChangeEvent, compile_str, dispatch_same
from traits.observation.exception_handling import handle_exception

_direct_types: tuple[type, type] | None
try:
    from traits.observation._named_trait_observer import NamedTraitObserver
    from traits.observation._trait_added_observer import TraitAddedObserver

    _direct_types = (NamedTraitObserver, TraitAddedObserver)
except ImportError:  # another Traits layout: the observer interface only
    _direct_types = None

_ctrait_prevent_event: Callable[[Any], bool] | None
try:
    from traits.observation._has_traits_helpers import (
        ctrait_prevent_event as _ctrait_prevent_event,
    )
except ImportError:  # another Traits layout: keep whatever Traits gives
    _ctrait_prevent_event = None

#: Kinds of trait for which Traits' ``ctrait_prevent_event`` only drops the
#: change from an uninitialized value: it compares old and new values only
#: for plain traits.
_NEVER_EQUAL_KINDS = frozenset({"event", "property"})

_new_object = object.__new__


def _event_is_its_attributes() -> bool:
    """Is Traits' ``TraitChangeEvent`` its four attributes and nothing else,
    so that one made by setting them is the one its ``__init__`` makes?"""
    values = {"object": 1, "name": "n", "old": 2, "new": 3}
    try:
        made = TraitChangeEvent(**values)
        by_attributes = _new_object(TraitChangeEvent)
        for key, value in values.items():
            setattr(by_attributes, key, value)
        return vars(made) == values == vars(by_attributes)
    except Exception:  # noqa: BLE001 - any doubt: its own __init__
        return False


_EVENT_BY_ATTRIBUTES = _event_is_its_attributes()


def _old_is_uninitialized(event: Any) -> bool:
    """``ctrait_prevent_event`` for an Event or Property trait, 4 times
    faster: it need not look the trait up again at every change (0.76 µs
    of the ~3 µs that an observer costs per progress message)."""
    return event.old is Uninitialized


def _is_plain_function(handler: Any) -> bool:
    """True for a function, or a method of one, that is not a coroutine
    function: the commonest handlers, which ``inspect.iscoroutinefunction``
    takes 0.65 µs to say False to.  False means "ask it"."""
    function = handler.__func__ if handler.__class__ is MethodType else handler
    return (
        function.__class__ is FunctionType
        and not function.__code__.co_flags & CO_COROUTINE
        # inspect.markcoroutinefunction (Python 3.12) marks a function so.
        and getattr(function, "_is_coroutine_marker", None) is None
    )


def _not_a_coroutine(handler: Any) -> bool:
    """``not inspect.iscoroutinefunction(handler)``, asked of ``inspect``
    only when :func:`_is_plain_function` cannot tell."""
    return _is_plain_function(handler) or not iscoroutinefunction(handler)


class _PlainDispatch:
    """``dispatch_same`` for a handler known not to be a coroutine function.

    ``dispatch_same`` asks ``inspect.iscoroutinefunction(handler)`` at every
    change (0.3 µs, a fifth of what an observer costs per progress message);
    the answer never changes for a given handler, so the short path asks
    once.  It compares equal to ``dispatch_same``, which is what Traits
    compares when it looks for a notifier to remove, so that Traits' own
    ``observe(..., remove=True)`` still finds the notifier.
    """

    __slots__ = ()

    def __call__(self, handler: Callable[[Any], Any], event: Any) -> None:
        handler(event)

    def __eq__(self, other: object) -> bool:
        return other is self or other is dispatch_same

    def __hash__(self) -> int:
        return hash(dispatch_same)


_PLAIN_DISPATCH = _PlainDispatch()


class _Probe:
    """A target for the notifiers :func:`_plain_dispatch_is_equal` makes."""


def _plain_dispatch_is_equal(node: Any) -> bool:
    """Does Traits take a notifier made with ``_PLAIN_DISPATCH`` for one made
    with ``dispatch_same`` (and the other way round)?  If a Traits release
    compares dispatchers by identity, the short path keeps ``dispatch_same``.
    """
    target = _Probe()
    try:
        ours = node.get_notifier(handler=repr, target=target, dispatcher=_PLAIN_DISPATCH)
        theirs = node.get_notifier(handler=repr, target=target, dispatcher=dispatch_same)
        return bool(ours.equals(theirs) and theirs.equals(ours))
    except Exception:  # noqa: BLE001 - any doubt: Traits' own dispatcher
        return False


#: Whether ``_PLAIN_DISPATCH`` may stand in for ``dispatch_same`` (decided
#: with the first plan made).
_plain_dispatch_ok: bool | None = None


#: How many expressions' plans are kept (futures are observed by few names).
_MAX_PLANS = 256

#: expression -> (root node, [(extra node, its child graph)], whether
#: ``_PLAIN_DISPATCH`` may be used, whether the nodes are Traits' own named
#: trait and ``trait_added`` observers), or None when the expression is not
#: one the short path handles.
_plans: dict[str, tuple | None] = {}


def _plan(expression: str) -> tuple | None:
    try:
        graphs = compile_str(expression)
    except Exception:  # noqa: BLE001 - Traits' path reports the bad expression
        return None
    if len(graphs) != 1:
        return None
    graph = graphs[0]
    node = graph.node
    if graph.children or not node.notify:
        return None
    extras = []
    for extra in node.iter_extra_graphs(graph):
        extra_node = extra.node
        if (
            extra_node.notify
            or len(extra.children) != 1
            or any(True for _ in extra_node.iter_extra_graphs(extra))
        ):
            return None
        extras.append((extra_node, extra.children[0]))
    global _plain_dispatch_ok
    if _plain_dispatch_ok is None:
        _plain_dispatch_ok = _plain_dispatch_is_equal(node)
    direct = (
        _direct_types is not None
        and type(node) is _direct_types[0]
        and len(extras) == 1
        and type(extras[0][0]) is _direct_types[1]
    )
    return node, extras, _plain_dispatch_ok, direct


def _filter_cheaply(notifier: Any, observable: Any) -> None:
    """On an Event or Property trait, give the handler's notifier
    :func:`_old_is_uninitialized` for Traits' change filter."""
    if (
        notifier.prevent_event is _ctrait_prevent_event
        and getattr(observable, "type", None) in _NEVER_EQUAL_KINDS
    ):
        notifier.prevent_event = _old_is_uninitialized


def _general_steps(
    obj: Any, handler: Callable[[Any], Any], node: Any, extras: list,
    dispatcher: Callable[[Any, Any], None], remove: bool,
) -> list[tuple[Any, Any]] | None:
    """The (notifier, observable) pairs, in the order Traits adds them,
    through the observer interface.  None: take Traits' path."""
    done = []
    for observable in node.iter_observables(obj):
        notifier = node.get_notifier(handler=handler, target=obj, dispatcher=dispatcher)
        if not remove:
            _filter_cheaply(notifier, observable)
        done.append((notifier, observable))
    for extra_node, child in extras:
        if any(True for _ in extra_node.iter_objects(obj)):
            # Its child graph would need the general walker there;
            # Traits' own extra nodes (trait_added) yield no objects.
            return None
        for observable in extra_node.iter_observables(obj):
            done.append(
                (extra_node.get_maintainer(
                    graph=child, handler=handler, target=obj, dispatcher=dispatch_same),
                 observable)
            )
    return done


def _direct_steps(
    obj: Any, handler: Callable[[Any], Any], node: Any, extras: list,
    dispatcher: Callable[[Any, Any], None], remove: bool,
) -> list[tuple[Any, Any]] | None:
    """The two (notifier, observable) pairs, in the order Traits adds them,
    for Traits' own named-trait and ``trait_added`` observers: what their
    ``iter_observables`` and ``iter_objects`` yield, without their
    generators (a fifth of an ``observe``).  None: take Traits' path."""
    ((extra_node, child),) = extras
    name = node.name
    # object_has_named_trait, for the trait and for trait_added; a missing
    # one takes Traits' path, which reports it (or skips it, if optional).
    # A class trait is there: a dict lookup, not two calls of _trait (0.45
    # µs each).
    class_traits = type(obj).__class_traits__
    if (name not in class_traits and obj._trait(name, 0) is None) or (
        "trait_added" not in class_traits and obj._trait("trait_added", 0) is None
    ):
        return None
    observable = obj._trait(name, 2)
    notifier = node.get_notifier(handler=handler, target=obj, dispatcher=dispatcher)
    if not remove:
        _filter_cheaply(notifier, observable)
    maintainer = extra_node.get_maintainer(
        graph=child, handler=handler, target=obj, dispatcher=dispatch_same
    )
    return [(notifier, observable), (maintainer, obj._trait("trait_added", 2))]


class _Entry:
    """One handler of a :class:`_Handlers`: what a Traits notifier keeps."""

    __slots__ = ("handler", "weak", "plain", "count")

    def __init__(self, handler: Callable[[Any], Any]) -> None:
        # A method is held weakly, as Traits does: observing does not keep
        # its object alive, and once that is gone the handler is skipped.
        self.weak = handler.__class__ is MethodType
        self.handler: Any = weakref.WeakMethod(handler) if self.weak else handler
        #: Not a coroutine function: called directly, as dispatch_same would.
        self.plain = _not_a_coroutine(handler)
        #: Times added, less times removed (Traits' reference count).
        self.count = 1

    def resolved(self) -> Callable[[Any], Any] | None:
        return self.handler() if self.weak else self.handler


class _Handlers:
    """offload's notifier on one Event or Property trait of one future.

    Traits calls it as it calls its own notifiers, with ``(object, name,
    old, new)``, at every change; it makes Traits' event and gives it to
    each handler observed through it, as Traits' notifier would: a change
    from an uninitialized value is dropped (for these kinds of trait the
    only one Traits drops), a coroutine function is run by Traits'
    ``dispatch_same``, and an exception goes to Traits' handler of
    notification exceptions.  Handlers added or removed during a change
    take effect from the next one, as in Traits.
    """

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: list[_Entry] = []

    def __call__(self, object: Any, name: str, old: Any, new: Any) -> None:
        if old is Uninitialized:
            return
        if _EVENT_BY_ATTRIBUTES:
            # Traits' event, made without its keyword-only __init__ (0.2 µs
            # instead of 0.6 for each observed change, progress too).
            event = _new_object(TraitChangeEvent)
            event.object = object
            event.name = name
            event.old = old
            event.new = new
        else:  # another Traits release's event
            event = TraitChangeEvent(object=object, name=name, old=old, new=new)
        for entry in tuple(self.entries):
            handler = entry.handler
            if entry.weak:
                handler = handler()
                if handler is None:
                    continue
            try:
                if entry.plain:
                    handler(event)
                else:
                    dispatch_same(handler, event)
            except Exception:
                handle_exception(event)

    def equals(self, other: object) -> bool:
        """Traits asks every notifier whether it is the one it removes."""
        return other is self


#: Whether the lean path is taken where it applies (tests turn it off to
#: test the exact path on the traits it would otherwise take).
_lean = True


def _lean_name(obj: Any, plan: tuple) -> str | None:
    """The trait's name if the lean path applies to it on ``obj``: the
    expression names an Event or Property trait that is there, and the
    Traits release is the one whose observers it reproduces."""
    node = plan[0]
    if not (_lean and plan[3]) or _ctrait_prevent_event is None or node.optional:
        return None
    name = node.name
    # A class trait by a dict lookup (a _trait call costs 0.45 µs); an
    # instance trait of that name is its clone, of the same kind.
    trait = type(obj).__class_traits__.get(name) or obj._trait(name, 0)
    if trait is None or trait.type not in _NEVER_EQUAL_KINDS:
        return None
    return name


def _lean_add_or_remove(obj: Any, handler: Callable[[Any], Any], name: str, remove: bool) -> bool:
    """Add ``handler`` to the trait's :class:`_Handlers` (made if need be),
    or remove it; False if there is nothing to remove here."""
    notifiers = obj._trait(name, 2)._notifiers(True)
    handlers = None
    for notifier in notifiers:
        if notifier.__class__ is _Handlers:
            handlers = notifier
            break
    if remove:
        if handlers is None:
            return False
        entries = handlers.entries
        for entry in entries:
            if entry.resolved() == handler:
                entry.count -= 1
                if not entry.count:
                    entries.remove(entry)
                    if not entries:
                        notifiers.remove(handlers)
                return True
        return False
    if handlers is None:
        handlers = _Handlers()
        notifiers.append(handlers)
    for entry in handlers.entries:
        if entry.resolved() == handler:
            entry.count += 1
            return True
    handlers.entries.append(_Entry(handler))
    return True


def add_or_remove(obj: Any, handler: Callable[[Any], Any], expression: str, remove: bool) -> bool:
    """Observe (or stop) ``expression`` on ``obj``, ``dispatch="same"``.

    Returns False, having changed nothing, when the expression or the object
    needs Traits' general path (which then also reports any error).
    """
    try:
        plan = _plans[expression]
    except KeyError:
        plan = _plan(expression)
        if len(_plans) < _MAX_PLANS:
            _plans[expression] = plan
    if plan is None:
        return False
    if callable(handler):  # else Traits' path says what is wrong
        name = _lean_name(obj, plan)
        if name is not None and _lean_add_or_remove(obj, handler, name, remove):
            return True
        # Not a lean trait, or a handler to remove that was added another
        # way (Traits' own path, say): the exact path finds it.
    node, extras, _, direct = plan
    dispatcher: Callable[[Any, Any], None] = dispatch_same
    if not remove and plan[2] and _not_a_coroutine(handler):
        dispatcher = _PLAIN_DISPATCH
    steps = _direct_steps if direct else _general_steps
    try:
        done = steps(obj, handler, node, extras, dispatcher, remove)
    except Exception:  # noqa: BLE001 - nothing was changed yet
        return False
    if done is None:
        return False
    # Traits removes in the reverse order of adding.
    applied = []
    try:
        for notifier, observable in reversed(done) if remove else done:
            if remove:
                notifier.remove_from(observable)
            else:
                notifier.add_to(observable)
            applied.append((notifier, observable))
    except Exception:  # noqa: BLE001 - undone; Traits' path raises the error
        for notifier, observable in reversed(applied):
            if remove:
                notifier.add_to(observable)
            else:
                notifier.remove_from(observable)
        return False
    return True
