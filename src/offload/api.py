"""The public API of offload: import everything from here.

Submitting work
    :func:`submit_call`, :func:`submit_iteration`, :func:`submit_progress`,
    NEW :func:`submit_steps` (with its :class:`IStepsReporter`), and
    :class:`TraitsExecutor` (``executor.submit(specification)``).
Futures
    :class:`CallFuture`, :class:`IterationFuture`, :class:`ProgressFuture`,
    NEW :class:`StepsFuture`; :class:`TaskCancelled` (raised in a task that
    was cancelled); NEW :class:`TaskFailed` (raised by ``await future`` when
    it failed); NEW :class:`TaskTimedOut` (the failure of a task that
    overran its time limit, ``executor.options(timeout=...)``).
Many futures at once
    NEW :class:`FutureGroup`: counts, overall fraction, ``cancel()``,
    ``as_completed()``, ``wait()``, ``await group``.
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
    :class:`IParallelContext`, :class:`MultithreadingContext` (threads, the
    default), :class:`MultiprocessingContext` (worker processes), NEW
    :class:`DaskContext` (a Dask cluster).
Event loops (where futures are updated)
    :class:`IEventLoop`, :class:`AsyncioEventLoop`, :class:`ETSEventLoop`
    (the toolkit Pyface picks, the default), NEW :class:`QtEventLoop`,
    :class:`WxEventLoop`.

Importing this module imports no Qt, wx, pyface or Dask, and none of the
process or Dask backends: ``MultiprocessingContext`` and ``DaskContext``
load their backend on first use of the name (and ``DaskContext`` imports
Dask when one is made); ``QtEventLoop`` and ``WxEventLoop`` load their
toolkit on first use of the name.  Where a toolkit or Dask is missing, the
name still imports (so ``from offload.api import *`` works everywhere) and
using it raises ``ImportError`` naming what to install.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from offload._backends.interface import IParallelContext
from offload._backends.shared import shared_array
from offload._backends.thread.context import MultithreadingContext
from offload._event_loops.asyncio_loop import AsyncioEventLoop
from offload._event_loops.ets import ETSEventLoop
from offload._event_loops.interface import IEventLoop
from offload._executor.executor import TraitsExecutor
from offload._executor.options import TaskTimedOut
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
from offload._futures.group import FutureGroup
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
from offload._futures.steps import StepsFuture
from offload._futures.steps_reporter import IStepsReporter
from offload._futures.submit import (
    submit_call,
    submit_iteration,
    submit_progress,
    submit_steps,
)

if TYPE_CHECKING:  # at run time these load on first use, see __getattr__
    from offload._backends.dask.context import DaskContext
    from offload._backends.process.context import MultiprocessingContext
    from offload._event_loops.qt import QtEventLoop
    from offload._event_loops.wx import WxEventLoop

__all__ = [
    # Executor and submission
    "TraitsExecutor",
    "submit_call",
    "submit_iteration",
    "submit_progress",
    "submit_steps",
    "IStepsReporter",
    # Futures
    "CallFuture",
    "IterationFuture",
    "ProgressFuture",
    "StepsFuture",
    "TaskCancelled",
    "TaskFailed",
    "TaskTimedOut",
    # Many futures
    "FutureGroup",
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
    "MultiprocessingContext",
    "DaskContext",
    # Large arrays in shared memory (needs NumPy)
    "shared_array",
    # Event loops
    "IEventLoop",
    "AsyncioEventLoop",
    "ETSEventLoop",
    "QtEventLoop",
    "WxEventLoop",
]

#: Names loaded on first use: (module, attribute).
_LAZY: dict[str, tuple[str, str]] = {
    "MultiprocessingContext": ("offload._backends.process.context", "MultiprocessingContext"),
    "DaskContext": ("offload._backends.dask.context", "DaskContext"),
    "QtEventLoop": ("offload._event_loops.qt", "QtEventLoop"),
    "WxEventLoop": ("offload._event_loops.wx", "WxEventLoop"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'offload.api' has no attribute {name!r}") from None
    try:
        value = getattr(importlib.import_module(module_name), attribute)
    except ImportError as error:
        value = _unavailable(name, error)
    globals()[name] = value
    return value


def _unavailable(name: str, error: ImportError) -> type:
    """A stand-in for ``name`` whose package is missing: raises on use."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        raise ImportError(f"offload.api.{name} cannot be used here: {error}") from error

    doc = f"Not available here: {error}"
    return type(name, (), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


def __dir__() -> list[str]:
    # The public names are exactly __all__ (Traits Futures' users test
    # that): not the helpers imported here, nor what tools add (pytest's
    # assertion rewriting adds "@py_builtins" to the modules of plugins).
    private = {name for name in globals() if name.startswith("_")}
    return sorted(private | set(__all__))
