"""The interface of a parallel context."""

from __future__ import annotations

import abc
import concurrent.futures
import logging
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from offload._event_loops.interface import IEventLoop
from offload._routing.interface import IMessageRouter


class ICancelFlag(Protocol):
    """What ``IParallelContext.event()`` returns: set on the main thread,
    read by the task wherever it runs."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...


class IParallelContext(abc.ABC):
    """Makes the matching concurrency parts an executor needs.

    A context may serve several executors at once.  Close it with
    :meth:`close` once no executor uses it; using a closed context raises
    ``RuntimeError``.

    Threads: the executor calls these methods on the main thread.  What they
    make crosses over: the pool runs tasks in workers (threads, processes,
    Dask workers), flags are set on the main thread and read in workers,
    queues are put to by workers, and routers deliver on the main thread.
    A context has no callbacks of its own.
    """

    @abc.abstractmethod
    def worker_pool(self, *, max_workers: int | None = None) -> concurrent.futures.Executor:
        """A new pool that runs tasks; the caller shuts it down."""

    @abc.abstractmethod
    def event(self) -> Any:
        """A new cancel flag (``set()`` / ``is_set()``) the workers can read.

        Called once per task: it must be cheap.
        """

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
    ``_offload_on_close``; it is held weakly, so that an executor dropped
    without ``shutdown()`` is not kept alive.  Contexts of other libraries
    need not have ``_offload_on_close``: their executors learn that the
    context is closed when a submit fails.
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
