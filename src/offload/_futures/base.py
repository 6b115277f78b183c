"""BaseFuture, BaseTask and the interfaces for custom task types.

Why this module is long: :class:`BaseFuture` is one state machine (its
messages, states, notifications, ``await`` and error messages read the
same internal state and tables), and the interfaces beside it are what
its contract is written on.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import operator
from collections import Counter
from collections.abc import Callable, Generator
from typing import Any

from traits.api import Any as AnyTrait
from traits.api import Bool, HasStrictTraits, Property
from traits.api import Callable as CallableTrait

from offload._futures.states import (
    CANCEL,
    CANCELLABLE_STATES,
    CANCELLED,
    CANCELLING,
    CANCELLING_AFTER_START,
    COMPLETED,
    DONE_STATES,
    EXECUTING,
    FAILED,
    PUBLIC_STATE,
    SENT,
    TIMING_OUT,
    TRANSITIONS,
    WAITING,
    FutureState,
)
from offload._routing.forwarded import reissue
from offload._routing.protocol import (
    CONTROL_NAMES,
    CRASHED,
    FINAL_KINDS,
    FORWARDED,
    RAISED,
    RETURNED,
    STARTED,
    TIMED_OUT,
)

logger = logging.getLogger("offload.futures")
#: Bound once: asked at every change of state, the first thing the main
#: thread does after a wake-up (a level set later is still seen).
_debug_enabled = logger.isEnabledFor
_DEBUG = logging.DEBUG


class TaskCancelled(Exception):
    """Raised inside a task when it notices that cancellation was asked for.

    It is raised in the worker (thread, process or Dask worker) that runs the
    task, never on the main thread: the progress reporter of
    :func:`~offload.api.submit_progress` raises it once ``cancel()`` was
    called, and a custom :class:`BaseTask` may raise it too.  A task that
    lets it propagate ends CANCELLED (its future was already CANCELLING),
    not FAILED.
    """


class TaskFailed(Exception):
    """Raised by ``await future`` when the future FAILED.

    It is raised in the coroutine that awaits, on the thread that runs the
    asyncio loop of the executor's :class:`~offload.api.AsyncioEventLoop`
    (the main thread).  The original exception object, when it could be
    carried back, is this exception's ``__cause__``.

    Attributes
    ----------
    exception : tuple of str
        The future's ``exception``: (type name, message, formatted traceback).
    """

    def __init__(self, exception: tuple[str, str, str]) -> None:
        super().__init__(f"{exception[0]}: {exception[1]}\n\n{exception[2]}")
        self.exception = exception


class IFuture(abc.ABC):
    """What the executor needs from a future.

    :class:`BaseFuture` implements it; a class may also ``register`` with it.
    All methods are called on the main thread.
    """

    @abc.abstractmethod
    def cancel(self) -> bool:
        """Ask the task to stop; True if that moved the future to CANCELLING."""

    @abc.abstractmethod
    def receive(self, message: tuple) -> bool:
        """Process one ``(kind, arg)`` message; True if it was the last one."""


class ITaskSpecification(abc.ABC):
    """Describes one background job: its worker callable and its future.

    Submit it with ``TraitsExecutor.submit``, which calls both methods on the
    thread that submits (the main thread, or any other).  The callable that
    :meth:`task` returns runs in a worker; the future that :meth:`future`
    returns changes on the main thread only.
    Subclass it, or ``register`` a class with it.
    """

    @abc.abstractmethod
    def task(self) -> Callable[[Callable[[tuple], None], Callable[[], bool]], Any]:
        """Return the callable run in the worker as ``task(send, cancelled)``.

        ``send((kind, arg))`` sends a message to the future (``kind`` a
        ``str``); ``cancelled()`` tells whether cancellation was asked for.
        Its return value or exception ends the task.  It must be picklable
        (cloudpickle) when the context runs tasks in other processes.
        """

    @abc.abstractmethod
    def future(self, cancel: Callable[[], None]) -> IFuture:
        """Return the future; its ``cancel()`` must call ``cancel``.

        Called on the submitting thread (the main thread, or any other):
        make the future there, and change it only when it receives messages
        (on the main thread).
        """


class BaseTask(abc.ABC):
    """Base class for the worker side of a custom task type.

    Implement :meth:`run`; inside it use :meth:`send` and :meth:`cancelled`.
    The instance is what ``ITaskSpecification.task()`` returns: it is made
    on the main thread, then sent to a worker (pickled, for processes and
    Dask), where :meth:`run`, :meth:`send` and :meth:`cancelled` are called,
    never on the main thread.
    """

    def __call__(self, send: Callable[[tuple], None], cancelled: Callable[[], bool]) -> Any:
        self._send = send
        self._cancelled = cancelled
        try:
            return self.run()
        finally:
            del self._send, self._cancelled

    @abc.abstractmethod
    def run(self) -> Any:
        """Do the work, in the worker.

        The return value becomes the future's ``result``; an exception makes
        the future FAILED (or CANCELLED, if cancellation was asked for).
        """

    def send(self, message_type: str, message_arg: Any = None) -> None:
        """Send ``(message_type, message_arg)`` to the future (in the worker).

        The future's ``_process_<message_type>(message_arg)`` handles it
        later, on the main thread, after every message sent before it.
        ``message_arg`` must be picklable for processes and Dask.
        """
        self._send((message_type, message_arg))

    def cancelled(self) -> bool:
        """True once cancellation was asked for (in the worker; cheap)."""
        return self._cancelled()


def states_of(futures: list[Any]) -> list[str | None]:
    """The public states of ``futures``; None for one that has none (an
    ``IFuture`` only registered).  For :class:`BaseFuture` s, without the
    cost of a ``state`` property call each: the executor reads the state of
    every finished task, once per batch."""
    try:
        return [PUBLIC_STATE[future._internal_state] for future in futures]
    except AttributeError:
        return [
            PUBLIC_STATE[future._internal_state]
            if isinstance(future, BaseFuture)
            else getattr(future, "state", None)
            for future in futures
        ]


def event_loop_of(future: Any) -> Any:
    """The event loop that delivers ``future``'s messages, or None.

    A :class:`BaseFuture`'s cancel callable is its executor's handle of the
    task, which names the executor's event loop; a future of another kind,
    or one made outside an executor, says nothing (None).
    """
    if not isinstance(future, BaseFuture):
        return None
    return getattr(future._cancel, "event_loop", None)


_internal_state_of = operator.attrgetter("_internal_state")


def count_states(futures: list[Any]) -> Counter[str | None]:
    """How many of ``futures`` are in each public state (None: an
    ``IFuture`` only registered, which has none).  In C loops for
    :class:`BaseFuture` s: the executor counts every finished task's state,
    once per batch, and a Python loop would cost each task a few tenths of
    a microsecond more."""
    try:
        internal = Counter(map(_internal_state_of, futures))
    except AttributeError:
        return Counter(states_of(futures))
    counts: Counter[str | None] = Counter()
    for state, number in internal.items():
        counts[PUBLIC_STATE[state]] += number
    return counts


def router_of(future: Any) -> Any:
    """The router that delivers ``future``'s messages while it is not done.

    None once the future is done (it drops its executor's handle then), and
    for a future made outside an executor.  What a
    :class:`~offload.api.FutureGroup` finds an executor's bookkeeping by.
    """
    # Once per future added to a group: no isinstance (an exception only
    # for a future that is done or was made by hand).
    try:
        return future._cancel.router
    except AttributeError:
        return None


def _check_delivered_in(running: asyncio.AbstractEventLoop, handle: Any) -> None:
    """Let the future's event loop refuse an ``await`` it could never wake.

    ``handle`` is the future's cancel callable, the executor's handle of its
    task, which names the executor's event loop.  An event loop that knows
    which asyncio loop delivers its messages (``AsyncioEventLoop``) checks
    that it is ``running``; others (Qt, wx, which may drive an asyncio loop
    through qasync) have nothing to check.
    """
    event_loop = getattr(handle, "event_loop", None)
    check = getattr(event_loop, "_check_await_in", None)
    if check is not None:
        check(running)


def _no_cancel() -> None:
    pass


def _force(cancel: Any) -> None:
    """Force the end of the task that ``cancel`` (its handle) cancels.

    The executor's handles have a ``force()``; a cancel callable of
    another kind has not, and ``cancel(force=True)`` is then a cancel.
    """
    force = getattr(cancel, "force", None)
    if force is not None:
        force()


class BaseFuture(HasStrictTraits):
    """Base class for futures: state machine, result, exception, dispatch.

    A message ``(kind, arg)`` from the task with a ``str`` kind is dispatched
    to ``self._process_<kind>(arg)``, on the main thread, while the future is
    EXECUTING; messages arriving once it is CANCELLING are dropped.

    ``state``, ``done`` and ``cancellable`` are read-only and observable; all
    their notifications fire on the main thread.
    """

    #: The state: WAITING, EXECUTING, COMPLETED, FAILED, CANCELLING or
    #: CANCELLED.  Read-only, observable.
    state = Property(FutureState)

    #: True in WAITING and EXECUTING, where ``cancel()`` does something.
    #: Changes exactly when ``state`` does.
    cancellable = Property(Bool())

    #: True in COMPLETED, FAILED and CANCELLED.  Fires once, after the last
    #: message of the task was delivered.
    done = Property(Bool())

    # Private traits ---------------------------------------------------------

    #: Called (no arguments) to ask the task to stop; set by the specification.
    _cancel = CallableTrait(_no_cancel)

    #: Finer internal state; see ``offload._futures.states``.
    _internal_state = AnyTrait(WAITING)

    #: The return value, once COMPLETED.
    _result = AnyTrait()

    #: (3-tuple of str, exception object or None), once FAILED.
    _failure = AnyTrait()

    #: Plain callables run (no arguments) right after ``done`` fires, or
    #: None.  ``await`` waits through it: an ``observe`` and its removal
    #: cost tens of times what a list append and remove do.
    _done_callbacks = AnyTrait(None)

    # Public API -------------------------------------------------------------

    @property
    def result(self) -> Any:
        """The task's return value.

        Raises
        ------
        AttributeError
            Unless the state is COMPLETED; the message says which state it is.
        """
        state = PUBLIC_STATE[self._internal_state]
        if state != COMPLETED:
            raise AttributeError(
                f"this future has no result: its state is {state!r} "
                f"({_WHY_NO_RESULT[state]}); read result once state is "
                f"{COMPLETED!r}"
            )
        return self._result

    @property
    def exception(self) -> tuple[str, str, str]:
        """``(type name, str(exception), formatted traceback)`` of the failure.

        Raises
        ------
        AttributeError
            Unless the state is FAILED.
        """
        return self._checked_failure()[0]

    @property
    def exception_object(self) -> BaseException | None:
        """The original exception, or None if it could not be carried back.

        For threads it is the very object the task raised; for processes and
        Dask, an unpickled copy.  Raises ``AttributeError`` unless FAILED.
        """
        return self._checked_failure()[1]

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` on the main thread right after ``done`` fires.

        At once if the future is done already.  Cheaper than observing
        ``done`` (a list append, where an ``observe`` builds Traits'
        notifiers): for code that follows many futures, such as
        :class:`~offload.api.FutureGroup`.  An exception ``callback``
        raises is logged; the other callbacks still run.
        """
        if PUBLIC_STATE[self._internal_state] in DONE_STATES:
            callback()
            return
        callbacks = self._done_callbacks
        if callbacks is None:
            self._done_callbacks = [callback]
        else:
            callbacks.append(callback)

    def cancel(self, *, force: bool = False) -> bool:
        """Ask the task to stop; with ``force=True``, make it stop.

        In WAITING or EXECUTING: moves to CANCELLING, asks the task to stop,
        and returns True.  In any other state: does nothing, returns False.
        Call it on the main thread.

        Parameters
        ----------
        force : bool, optional
            Also end a running task that does not look at its cancel flag.
            On a process context, the worker process running the task is
            killed with every process it started (SIGTERM to its process
            group, SIGKILL ``kill_grace`` seconds later); the future stays
            CANCELLING until the worker is dead, then becomes CANCELLED,
            and a new worker takes its place.  On Dask, the worker is
            restarted if it runs one task at a time.  Threads cannot be
            killed: there (and on a Dask worker running several tasks) it
            is the same as ``cancel()``.  A task that has not started is
            simply withdrawn.  Given while CANCELLING (after a plain
            ``cancel()`` that the task ignores), it still forces the end,
            and returns False like ``cancel()``.
        """
        new_state = TRANSITIONS.get((self._internal_state, CANCEL))
        if new_state is None:
            if force and self._internal_state is CANCELLING_AFTER_START:
                _force(self._cancel)
            return False
        self._set_internal_state(new_state)
        self._cancel()  # type: ignore[misc]
        if force:
            _force(self._cancel)
        return True

    def receive(self, message: tuple) -> bool:
        """Process one message from the task; True if it was the last one.

        Called by the executor's router, on the main thread.
        """
        kind, arg = message
        state = self._internal_state
        if kind.__class__ is str:
            # The hot path: a user message.
            if state is EXECUTING:
                handler = _handler(type(self), kind)
                handler(self, arg)
                return False
            if state is CANCELLING_AFTER_START or state is TIMING_OUT:
                return False
            self._protocol_error(kind)
            return False
        # The two messages of every task that runs, first: no table to
        # look in, on the main thread's critical path of a round trip.
        if kind == RETURNED and state is EXECUTING:
            self._result = arg
            self._set_internal_state(COMPLETED)
            return True
        if kind == STARTED and state is WAITING:
            self._set_internal_state(EXECUTING)
            return False
        if kind == FORWARDED:
            # A warning or log record of the task, in any state: not part
            # of the task's life, so not in the table.  What it raises (a
            # warning the filters turn into an error) goes where an
            # observer's exception goes.
            reissue(arg)
            return False
        if kind == CRASHED and state is WAITING:
            self._set_internal_state(EXECUTING)
            # Read it again: an observer of that change may have cancelled.
            state = self._internal_state
        new_state = TRANSITIONS.get((state, kind))
        if new_state is None:
            self._protocol_error(kind)
            return kind in FINAL_KINDS
        if kind == RETURNED:
            if new_state == COMPLETED:
                self._result = arg
        elif kind == RAISED or kind == CRASHED:
            # Only from EXECUTING: a task timing out fails with its TaskTimedOut.
            if new_state == FAILED and state is EXECUTING:
                self._failure = arg
        elif kind == TIMED_OUT:
            if new_state is not state:  # not while cancelling
                self._failure = arg
        self._set_internal_state(new_state)
        return new_state in DONE_STATES

    def __await__(self) -> Generator[Any, None, Any]:
        """``await future`` in the asyncio loop that delivers its messages.

        The coroutine resumes on that loop's thread (the main thread) once
        the future is done.

        Returns the result; raises :class:`TaskFailed` if the future FAILED
        and ``asyncio.CancelledError`` if it was CANCELLED.
        """
        if PUBLIC_STATE[self._internal_state] not in DONE_STATES:
            running = asyncio.get_running_loop()
            _check_delivered_in(running, self._cancel)
            waiter = running.create_future()

            def on_done() -> None:
                if not waiter.done():
                    waiter.set_result(None)

            callbacks = self._done_callbacks
            if callbacks is None:
                callbacks = self._done_callbacks = []
            callbacks.append(on_done)
            try:
                yield from waiter.__await__()
            finally:
                # Gone already if the future finished; still there if the
                # awaiting coroutine was itself cancelled.
                if on_done in callbacks:
                    callbacks.remove(on_done)
        state = PUBLIC_STATE[self._internal_state]
        if state == COMPLETED:
            return self._result
        if state == FAILED:
            info, original = self._failure
            raise TaskFailed(info) from original
        raise asyncio.CancelledError(f"the task of {self!r} was cancelled")

    # Private ----------------------------------------------------------------

    def _get_state(self) -> str:
        return PUBLIC_STATE[self._internal_state]

    def _get_cancellable(self) -> bool:
        return PUBLIC_STATE[self._internal_state] in CANCELLABLE_STATES

    def _get_done(self) -> bool:
        return PUBLIC_STATE[self._internal_state] in DONE_STATES

    def _checked_failure(self) -> tuple:
        state = PUBLIC_STATE[self._internal_state]
        if state != FAILED:
            raise AttributeError(
                f"this future has no exception: its state is {state!r} "
                f"({_WHY_NO_EXCEPTION[state]}); read exception once state is "
                f"{FAILED!r}"
            )
        return self._failure

    def _set_internal_state(self, new: str) -> None:
        old = self._internal_state
        if new is old:
            return
        self._internal_state = new
        change = _PUBLIC_CHANGES[old, new]
        if change is None:
            return
        old_public, new_public, cancellable, done = change
        if _debug_enabled(_DEBUG):
            logger.debug("future %#x: %s -> %s", id(self), old_public, new_public)
        if done:
            # Nothing can be cancelled any more: drop the reference to it.
            self._cancel = _no_cancel
        notify = self.trait_property_changed  # type: ignore[attr-defined]
        if not done:
            notify("state", old_public, new_public)
            if cancellable:
                notify("cancellable", not cancellable[0], cancellable[0])
            return
        try:
            notify("state", old_public, new_public)
            if cancellable:
                notify("cancellable", not cancellable[0], cancellable[0])
            notify("done", False, True)
        finally:
            # Even if an observer raised (Traits re-raises when told to):
            # a coroutine awaiting the future must still wake.
            callbacks = self._done_callbacks
            if callbacks:
                self._done_callbacks = None
                for callback in callbacks:
                    try:
                        callback()
                    except Exception:
                        # One awaiter's trouble must not starve the others.
                        logger.exception("error waking a coroutine awaiting %r", self)

    def _protocol_error(self, kind: Any) -> None:
        event = CONTROL_NAMES.get(kind, SENT if isinstance(kind, str) else kind)
        logger.error(
            "offload internal error: message %r is not valid for a future in "
            "internal state %r; it was ignored",
            event,
            self._internal_state,
        )


_WHY_NO_RESULT = {
    WAITING: "the task has not started",
    EXECUTING: "the task is still running",
    FAILED: "the task raised an exception; see the exception attribute",
    CANCELLING: "it is being cancelled; its result will be discarded",
    CANCELLED: "it was cancelled; its result was discarded",
    COMPLETED: "",
}
_WHY_NO_EXCEPTION = {
    WAITING: "the task has not started",
    EXECUTING: "the task is still running",
    COMPLETED: "the task returned a result; see the result attribute",
    CANCELLING: "it is being cancelled; any exception will be discarded",
    CANCELLED: "it was cancelled; any exception was discarded",
    FAILED: "",
}


def _public_change(old: str, new: str) -> tuple | None:
    """What a change of internal state from ``old`` to ``new`` notifies.

    None if the public state stays; else ``(old public state, new public
    state, (new cancellable,) if cancellable changes else (), whether
    done becomes True)``.  Done never goes back to False.
    """
    old_public, new_public = PUBLIC_STATE[old], PUBLIC_STATE[new]
    if old_public is new_public:
        return None
    new_cancellable = new_public in CANCELLABLE_STATES
    cancellable = (
        (new_cancellable,) if (old_public in CANCELLABLE_STATES) is not new_cancellable else ()
    )
    done = new_public in DONE_STATES and old_public not in DONE_STATES
    return old_public, new_public, cancellable, done


#: (old internal state, new internal state) -> :func:`_public_change`, for
#: every pair: worked out once, not at each of a round trip's two changes.
_PUBLIC_CHANGES = {
    (old, new): _public_change(old, new) for old in PUBLIC_STATE for new in PUBLIC_STATE
}

#: (future class, message kind) -> unbound ``_process_<kind>`` method.
_HANDLERS: dict[tuple[type, str], Callable[[Any, Any], None]] = {}


def _handler(cls: type, kind: str) -> Callable[[Any, Any], None]:
    try:
        return _HANDLERS[cls, kind]
    except KeyError:
        pass
    name = "_process_" + kind
    handler = getattr(cls, name, None)
    if handler is None:
        return _unhandled(name, kind)
    _HANDLERS[cls, kind] = handler
    return handler


def _unhandled(name: str, kind: str) -> Callable[[Any, Any], None]:
    """What handles a message kind that has no ``_process_<kind>``: a log.

    Logged, not raised, like a protocol error: raised, it would reach the
    event loop (where the observers' exceptions that Traits re-raises go),
    far from the future class that lacks the method.
    """

    def report(future: Any, arg: Any) -> None:
        logger.error(
            "%s has no method %s() to handle the task's %r messages; define "
            "it on the future class", type(future).__name__, name, kind,
        )

    return report


# HasTraits' metaclass and ABCMeta do not mix; register instead.
IFuture.register(BaseFuture)

