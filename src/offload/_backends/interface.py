"""The interface of a parallel context."""

from __future__ import annotations

import abc
import concurrent.futures
import logging
import weakref
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from offload._event_loops.interface import IEventLoop
from offload._routing.interface import IMessageRouter


class ICancelFlag(Protocol):
    """What ``IParallelContext.cancel_flag()`` returns: set on the main
    thread, read by the task wherever it runs."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...


class IEvent(ICancelFlag, Protocol):
    """What ``IParallelContext.event()`` returns: the API of
    ``threading.Event``, usable on the main thread and inside tasks."""

    def clear(self) -> None: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class IParallelContext(abc.ABC):
    """Makes the matching concurrency parts an executor needs.

    A context may serve several executors at once.  Close it with
    :meth:`close` once no executor uses it; using a closed context raises
    ``RuntimeError``.

    Threads: the executor calls these methods on the main thread.  What they
    make crosses over: the pool runs tasks in workers (threads, processes,
    Dask workers), cancel flags are set on the main thread and read in
    workers, events are set and waited for on either side, queues are put
    to by workers, and routers deliver on the main thread.
    A context has no callbacks of its own.
    """

    @abc.abstractmethod
    def worker_pool(self, *, max_workers: int | None = None) -> concurrent.futures.Executor:
        """A new pool that runs tasks; the caller shuts it down."""

    @abc.abstractmethod
    def event(self) -> IEvent:
        """A new event, with the API of ``threading.Event``, for your tasks.

        ``set()``, ``clear()``, ``is_set()`` and ``wait(timeout=None)``
        (which returns ``is_set()``, so False on a timeout) work on the main
        thread and inside tasks wherever they run: pass the event to a task
        as an argument (``submit_call(executor, event.wait, 5)``).  Setting
        it on either side wakes a ``wait`` on the other.  As Traits Futures
        documented it: an event for the application's own signalling.
        Call it on the main thread.
        """

    def cancel_flag(self) -> ICancelFlag:
        """A new cancel flag for one task: the executor calls it per task.

        The flag needs only ``set()`` (main thread, by ``future.cancel()``)
        and ``is_set()`` (the task, wherever it runs), so a context can
        make it much cheaper than an event: it is made once per submitted
        task, on the submitting thread.  The default returns
        :meth:`event`, so a context written for Traits Futures, which made
        its cancel flags with ``event()``, keeps working; offload's
        contexts return flags of their own.
        """
        return self.event()

    def call_on_close(self, callback: Callable[[], None]) -> bool:
        """Ask to have ``callback()`` called as this context closes.

        The executor calls it once, as it is made, with a bound method of
        its own, so that closing a context under a running executor stops
        it (instead of leaving it RUNNING while every submit fails).
        ``callback`` runs on the thread that calls :meth:`close`; a context
        holds it weakly, so that it keeps no executor alive.  Returns
        whether the context will call it: the default does not, and its
        executors learn that it closed when a submit fails.
        """
        return False

    @abc.abstractmethod
    def queue(self) -> Any:
        """A new queue the workers can put to and the main process get from."""

    @abc.abstractmethod
    def message_router(self, event_loop: IEventLoop) -> IMessageRouter:
        """A new router delivering this context's messages on ``event_loop``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release everything this context made.  Idempotent."""

    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """True once :meth:`close` was called."""


class CloseNotices:
    """Who an offload context tells as it closes: the executors using it.

    An executor registers a bound method through the context's
    :meth:`IParallelContext.call_on_close`; it is held weakly, so that an
    executor dropped without ``shutdown()`` is not kept alive.
    """

    __slots__ = ("_callbacks",)

    def __init__(self) -> None:
        self._callbacks: list[weakref.WeakMethod] = []

    def add(self, callback: Callable[[], None]) -> None:
        self._callbacks = [ref for ref in self._callbacks if ref() is not None]
        self._callbacks.append(weakref.WeakMethod(callback))

    def run(self) -> None:
        """Call each callback once (the thread that closes the context)."""
        callbacks, self._callbacks = self._callbacks, []
        for ref in callbacks:
            callback = ref()
            if callback is None:
                continue
            try:
                callback()
            except Exception:  # noqa: BLE001 - closing goes on regardless
                logging.getLogger("offload.contexts").exception(
                    "an executor failed to stop as its context closed"
                )


_Context = TypeVar("_Context", bound="ContextBase")


class ContextBase(IParallelContext):
    """What offload's own contexts share: their closed state, the executors
    they tell as they close (:meth:`call_on_close`), and ``with``.

    A subclass calls ``super().__init__()``, and starts its ``close()``
    with ``if not self._mark_closed(): return``.
    """

    def __init__(self) -> None:
        self._closed = False
        self._close_notices = CloseNotices()

    @property
    def closed(self) -> bool:
        return self._closed

    def call_on_close(self, callback: Callable[[], None]) -> bool:
        """Call ``callback`` (a bound method, held weakly) as the context
        closes: how an executor learns that its context is gone."""
        self._close_notices.add(callback)
        return True

    def _mark_closed(self) -> bool:
        """Close: refuse further use, tell the executors.  False if it was
        closed already (``close()`` is idempotent)."""
        if self._closed:
            return False
        self._closed = True
        self._close_notices.run()
        return True

    def __enter__(self: _Context) -> _Context:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def check_open(context: IParallelContext) -> None:
    """Raise a clear error when ``context`` is closed."""
    if context.closed:
        raise RuntimeError(
            f"{type(context).__name__} is closed; create a new context "
            "(a context cannot be used after close())"
        )


def check_max_workers(max_workers: Any) -> None:
    """Reject a ``max_workers`` that is not ``None`` or a positive int."""
    if max_workers is None:
        return
    if isinstance(max_workers, bool) or not isinstance(max_workers, int):
        raise TypeError(
            f"max_workers must be a positive int or None, got {max_workers!r}"
        )
    if max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, got {max_workers}")


def check_seconds(name: str, value: Any) -> None:
    """Reject a duration in seconds that is not a positive real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be a number of seconds, got {value!r} of type "
            f"{type(value).__name__}"
        )
    if not value > 0:  # also NaN
        raise ValueError(f"{name} must be more than 0 seconds, got {value!r}")
