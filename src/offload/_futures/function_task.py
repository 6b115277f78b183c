"""Shared parts of the built-in task kinds, which all wrap a user callable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from offload._futures.base import BaseFuture, IFuture, ITaskSpecification


class FunctionTask:
    """Worker side: a user callable with its arguments.

    Slots and explicit pickling keep it small and fast to send to a process.
    Subclasses implement ``__call__(send, cancelled)``.
    """

    __slots__ = ("callable", "args", "kwargs")

    def __init__(self, callable: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        self.callable = callable
        self.args = args
        self.kwargs = kwargs

    def __getstate__(self) -> tuple:
        return (self.callable, self.args, self.kwargs)

    def __setstate__(self, state: tuple) -> None:
        self.callable, self.args, self.kwargs = state

    def __call__(self, send: Callable[[tuple], None], cancelled: Callable[[], bool]) -> Any:
        raise NotImplementedError


class FunctionSpecification(ITaskSpecification):
    """Main-thread side: which task class runs the callable, which future shows it."""

    __slots__ = ("callable", "args", "kwargs")

    task_class: ClassVar[type[FunctionTask]]
    future_class: ClassVar[type[BaseFuture]]

    def __init__(
        self, callable: Callable[..., Any], args: tuple = (), kwargs: dict | None = None
    ) -> None:
        self.callable = callable
        self.args = args
        self.kwargs = {} if kwargs is None else kwargs

    def task(self) -> FunctionTask:
        return self.task_class(self.callable, self.args, self.kwargs)

    def future(self, cancel: Callable[[], None]) -> IFuture:
        return self.future_class(_cancel=cancel)  # type: ignore[return-value]
