"""``submit_call``, ``submit_iteration``, ``submit_progress`` and ``submit_steps``."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, Protocol, TypeVar

from offload._futures.base import IFuture, ITaskSpecification
from offload._futures.call import BackgroundCall, CallFuture
from offload._futures.iteration import BackgroundIteration, IterationFuture
from offload._futures.progress import BackgroundProgress, ProgressFuture
from offload._futures.steps import BackgroundSteps, StepsFuture


class Submitter(Protocol):
    """What the ``submit_*`` functions submit to: a ``TraitsExecutor``, or
    anything else with its ``submit(task)``."""

    def submit(self, task: ITaskSpecification) -> IFuture:
        """Submit ``task``; return its future."""
        ...

P = ParamSpec("P")
R = TypeVar("R")


_is_callable = builtins.callable


def _not_callable(function_name: str, callable: object) -> TypeError:
    """The error for a ``callable`` that is not one (checked inline: a
    call less on the path of every submission)."""
    return TypeError(
        f"{function_name}(executor, callable, *args, **kwargs) needs a "
        f"callable as its second argument, got {callable!r} of type "
        f"{type(callable).__name__}"
    )


def submit_call(
    executor: Submitter,
    callable: Callable[P, Any],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> CallFuture:
    """Run ``callable(*args, **kwargs)`` in the background.

    Call it from any thread (see :meth:`~offload.api.TraitsExecutor.submit`), a task
    running on a thread context included.  ``callable`` runs once in a
    worker; the future is returned WAITING, and its traits change, and
    notify, on the main thread.

    Parameters
    ----------
    executor : TraitsExecutor
        The executor to submit to; it must be RUNNING.
    callable : callable
        The function to run in the worker.
    *args, **kwargs
        Its arguments (picklable for processes and Dask).

    Returns
    -------
    CallFuture
        ``result`` is the return value once the state is COMPLETED.
    """
    if not _is_callable(callable):
        raise _not_callable("submit_call", callable)
    # Not typing.cast: a Python call, on the path of every submission.
    return executor.submit(BackgroundCall(callable, args, kwargs))  # type: ignore[return-value]


def submit_iteration(
    executor: Submitter,
    callable: Callable[P, Iterable[Any]],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> IterationFuture:
    """Iterate over ``callable(*args, **kwargs)`` in the background.

    Call it from any thread.  ``callable`` is called, and its iterable
    consumed, in a worker.  Each item fires the future's ``result_event`` on
    the main thread, in order; a generator's return value becomes
    ``result``.  Cancellation is checked between items, and a cancelled
    generator is closed in the worker.

    Parameters
    ----------
    executor : TraitsExecutor
        The executor to submit to; it must be RUNNING.
    callable : callable
        Returns an iterable, usually a generator function.
    *args, **kwargs
        Its arguments.

    Returns
    -------
    IterationFuture
    """
    if not _is_callable(callable):
        raise _not_callable("submit_iteration", callable)
    return executor.submit(  # type: ignore[return-value]
        BackgroundIteration(callable, args, kwargs)
    )


def submit_progress(
    executor: Submitter,
    callable: Callable[..., Any],
    /,
    *args: Any,
    **kwargs: Any,
) -> ProgressFuture:
    """Run ``callable(*args, progress=reporter, **kwargs)`` in the background.

    Call it from any thread.  ``callable`` runs in a worker, and so do
    its calls ``reporter(info)``; each fires the future's ``progress`` event
    with ``info`` later on the main thread, in order.  Once cancellation is
    asked for, ``reporter`` raises :class:`TaskCancelled`, which ends the
    task as CANCELLED; ``reporter.cancelled()`` asks without raising.

    Parameters
    ----------
    executor : TraitsExecutor
        The executor to submit to; it must be RUNNING.
    callable : callable
        Accepts a ``progress`` keyword argument.
    *args, **kwargs
        Its other arguments; ``progress`` among them is a ``TypeError``.

    Returns
    -------
    ProgressFuture
    """
    if not _is_callable(callable):
        raise _not_callable("submit_progress", callable)
    return executor.submit(  # type: ignore[return-value]
        BackgroundProgress(callable, args, kwargs)
    )


def submit_steps(
    executor: Submitter,
    total: int,
    message: str,
    callable: Callable[..., Any],
    /,
    *args: Any,
    **kwargs: Any,
) -> StepsFuture:
    """Run ``callable(*args, reporter=reporter, **kwargs)``, counting its steps.

    Call it from any thread.  ``callable`` runs in a worker, and so do
    its calls ``reporter.step(message, size=1)`` (start a step of ``size``
    of the ``total`` units; the previous step is then complete) and
    ``reporter.stop(message)`` (the last step is complete).  The future's
    ``complete``, ``message``, ``fraction`` and ``remaining_time`` follow
    them on the main thread, at most 25 times a second: faster updates are
    coalesced in the worker, the latest winning, and the last one is always
    delivered before the future is done.  Once cancellation is asked for,
    ``step`` and ``stop`` raise :class:`TaskCancelled`, which ends the task
    as CANCELLED.

    Parameters
    ----------
    executor : TraitsExecutor
        The executor to submit to; it must be RUNNING.
    total : int
        Units of work of the whole task, in whatever unit suits it (>= 0;
        0 if unknown).
    message : str
        What the future's ``message`` says until the first step.
    callable : callable
        Accepts a ``reporter`` keyword argument (an :class:`IStepsReporter`).
    *args, **kwargs
        Its other arguments; ``reporter`` among them is a ``TypeError``.

    Returns
    -------
    StepsFuture
    """
    if not _is_callable(callable):
        raise TypeError(
            "submit_steps(executor, total, message, callable, *args, **kwargs) "
            f"needs a callable as its fourth argument, got {callable!r} of type "
            f"{type(callable).__name__}"
        )
    return executor.submit(  # type: ignore[return-value]
        BackgroundSteps(total, message, callable, args, kwargs)
    )
