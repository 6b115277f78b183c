"""``submit_call``, ``submit_iteration`` and ``submit_progress``."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from offload._futures.call import BackgroundCall, CallFuture
from offload._futures.iteration import BackgroundIteration, IterationFuture
from offload._futures.progress import BackgroundProgress, ProgressFuture

if TYPE_CHECKING:
    from offload._executor.executor import TraitsExecutor

P = ParamSpec("P")
R = TypeVar("R")


def _check_callable(function_name: str, callable: object) -> None:
    if not builtins.callable(callable):
        raise TypeError(
            f"{function_name}(executor, callable, *args, **kwargs) needs a "
            f"callable as its second argument, got {callable!r} of type "
            f"{type(callable).__name__}"
        )


def submit_call(
    executor: TraitsExecutor,
    callable: Callable[P, Any],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> CallFuture:
    """Run ``callable(*args, **kwargs)`` in the background.

    Returns a :class:`CallFuture` whose traits change on the main thread.
    """
    _check_callable("submit_call", callable)
    return cast(CallFuture, executor.submit(BackgroundCall(callable, args, kwargs)))


def submit_iteration(
    executor: TraitsExecutor,
    callable: Callable[P, Iterable[Any]],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> IterationFuture:
    """Iterate over ``callable(*args, **kwargs)`` in the background.

    Each item fires the future's ``result_event`` on the main thread, in
    order; a generator's return value becomes ``result``.  Cancellation is
    checked between items, and a cancelled generator is closed.
    """
    _check_callable("submit_iteration", callable)
    return cast(
        IterationFuture, executor.submit(BackgroundIteration(callable, args, kwargs))
    )


def submit_progress(
    executor: TraitsExecutor,
    callable: Callable[..., Any],
    /,
    *args: Any,
    **kwargs: Any,
) -> ProgressFuture:
    """Run ``callable(*args, progress=reporter, **kwargs)`` in the background.

    Each ``reporter(info)`` fires the future's ``progress`` event with
    ``info`` on the main thread, in order.  Once cancellation is asked for,
    ``reporter`` raises :class:`TaskCancelled`, which ends the task as
    CANCELLED.
    """
    _check_callable("submit_progress", callable)
    return cast(
        ProgressFuture, executor.submit(BackgroundProgress(callable, args, kwargs))
    )
