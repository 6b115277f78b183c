"""The public API of offload: import everything from here.

Submitting work
    :func:`submit_call`, :func:`submit_iteration`, :func:`submit_progress`,
    and :class:`TraitsExecutor` (``executor.submit(specification)``).
Futures
    :class:`CallFuture`, :class:`IterationFuture`, :class:`ProgressFuture`;
    :class:`TaskCancelled` (raised in a task that was cancelled);
    NEW :class:`TaskFailed` (raised by ``await future`` when it failed).
Future states
    :data:`FutureState` (trait type) and the strings :data:`WAITING`,
    :data:`EXECUTING`, :data:`COMPLETED`, :data:`FAILED`, :data:`CANCELLING`,
    :data:`CANCELLED`.
Executor states
    :data:`ExecutorState` (trait type), :data:`RUNNING`, :data:`STOPPING`,
    :data:`STOPPED`.
Custom task types
    :class:`BaseFuture`, :class:`BaseTask`, :class:`IFuture`,
    :class:`ITaskSpecification`.
Contexts (where tasks run)
    :class:`IParallelContext`, :class:`MultithreadingContext`.
Event loops (where futures are updated)
    :class:`IEventLoop`, :class:`AsyncioEventLoop`.

Toolkit and cluster parts load lazily: importing this module imports no Qt,
wx, pyface or dask.
"""

from __future__ import annotations

import importlib
from typing import Any

from offload._contexts.interface import IParallelContext
from offload._contexts.thread_context import MultithreadingContext
from offload._event_loops.asyncio_loop import AsyncioEventLoop
from offload._event_loops.interface import IEventLoop
from offload._executor.executor import TraitsExecutor
from offload._executor.states import RUNNING, STOPPED, STOPPING, ExecutorState
from offload._futures.base import (
    BaseFuture,
    BaseTask,
    IFuture,
    ITaskSpecification,
    TaskCancelled,
    TaskFailed,
)
from offload._futures.call import CallFuture
from offload._futures.iteration import IterationFuture
from offload._futures.progress import ProgressFuture
from offload._futures.states import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXECUTING,
    FAILED,
    WAITING,
    FutureState,
)
from offload._futures.submit import submit_call, submit_iteration, submit_progress

__all__ = [
    # Executor and submission
    "TraitsExecutor",
    "submit_call",
    "submit_iteration",
    "submit_progress",
    # Futures
    "CallFuture",
    "IterationFuture",
    "ProgressFuture",
    "TaskCancelled",
    "TaskFailed",
    # Future states
    "FutureState",
    "WAITING",
    "EXECUTING",
    "COMPLETED",
    "FAILED",
    "CANCELLING",
    "CANCELLED",
    # Executor states
    "ExecutorState",
    "RUNNING",
    "STOPPING",
    "STOPPED",
    # Custom task types
    "BaseFuture",
    "BaseTask",
    "IFuture",
    "ITaskSpecification",
    # Contexts
    "IParallelContext",
    "MultithreadingContext",
    # Event loops
    "IEventLoop",
    "AsyncioEventLoop",
]

#: Names loaded on first use: (module, attribute).  A name joins ``__all__``
#: once its issue is resolved and it works.
_LAZY: dict[str, tuple[str, str]] = {
    "DaskContext": ("offload._contexts.dask_context", "DaskContext"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'offload.api' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
