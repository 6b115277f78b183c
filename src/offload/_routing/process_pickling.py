"""Pickling for what crosses between the main process and worker processes.

Plain :mod:`pickle` is about ten times faster than cloudpickle, so it is
tried first; cloudpickle takes over when pickle fails (lambdas, closures,
locally defined functions) or when the pickle refers to ``__main__`` by name
(a function of an interactive session or of a script's ``if __name__ ==
"__main__":`` block may not exist in the worker's ``__main__``; cloudpickle
carries it by value).  cloudpickle is imported only when first needed.

Failures are described by naming the object that could not be pickled, so
that a future FAILS with a message a user can act on.
"""

from __future__ import annotations

import pickle
from typing import Any

#: Protocol 5: out-of-band buffers aside, the fastest for large bytes/arrays.
PROTOCOL = pickle.HIGHEST_PROTOCOL

#: Longest ``repr`` quoted in an error message.
_REPR_LIMIT = 200


def dumps(obj: Any) -> bytes:
    """Pickle ``obj`` for another process: pickle first, then cloudpickle.

    Without cloudpickle, what refers to ``__main__`` goes by reference, as
    with plain :mod:`multiprocessing` (workers import the main module, so its
    top-level functions are found there).  Raises whatever cloudpickle
    raises when neither can pickle ``obj``.
    """
    try:
        data = pickle.dumps(obj, PROTOCOL)
    except Exception:  # noqa: BLE001 - any pickling failure: try cloudpickle
        pass
    else:
        if b"__main__" not in data or not _has_cloudpickle():
            return data
    return cloud_dumps(obj)


def _has_cloudpickle() -> bool:
    global _CLOUDPICKLE
    if _CLOUDPICKLE is None:
        try:
            import cloudpickle  # noqa: F401
        except ImportError:
            _CLOUDPICKLE = False
        else:
            _CLOUDPICKLE = True
    return _CLOUDPICKLE


#: Whether cloudpickle imports; None until first asked.
_CLOUDPICKLE: bool | None = None


def cloud_dumps(obj: Any) -> bytes:
    """Pickle ``obj`` with cloudpickle (imported on first use)."""
    try:
        import cloudpickle
    except ImportError:
        raise RuntimeError(
            "offload's MultiprocessingContext needs cloudpickle to send "
            "lambdas, closures and __main__ functions to worker processes; "
            "install it with: pip install 'offload[process]'"
        ) from None
    return cloudpickle.dumps(obj, PROTOCOL)


def short_repr(obj: Any) -> str:
    """``repr(obj)``, cut to a readable length; never raises."""
    try:
        text = repr(obj)
    except Exception:  # noqa: BLE001 - a broken __repr__
        text = f"<{type(obj).__qualname__} object (repr() failed)>"
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 3] + "..."
    return text


def error_text(error: BaseException) -> str:
    """``TypeName: message`` of a pickling error."""
    return f"{type(error).__name__}: {error}"


def find_unpicklable(obj: Any) -> tuple[str, Any, BaseException] | None:
    """Name the part of a task runner that cannot be pickled.

    Looks into what offload's own objects hold (a ``TaskRunner``'s task, a
    function task's callable, arguments and keyword arguments) and returns
    ``(description, part, error)`` for the first part that does not
    pickle, or None when every part pickles on its own.
    """
    candidates: list[tuple[str, Any]] = []
    task = getattr(obj, "task", None)
    if task is not None and hasattr(obj, "cancel_flag"):
        candidates.append(("the cancel flag", getattr(obj, "cancel_flag", None)))
        candidates.append(("the message sender", getattr(obj, "send", None)))
        obj = task
    if hasattr(obj, "callable") and hasattr(obj, "args") and hasattr(obj, "kwargs"):
        candidates.append(("the callable", obj.callable))
        for index, arg in enumerate(obj.args):
            candidates.append((f"positional argument {index}", arg))
        for name, value in obj.kwargs.items():
            candidates.append((f"keyword argument {name!r}", value))
    else:
        candidates.append(("the task", obj))
    for description, part in candidates:
        try:
            dumps(part)
        except Exception as error:  # noqa: BLE001
            return description, part, error
    return None


def describe_unpicklable(obj: Any, error: BaseException) -> str:
    """A message saying what in ``obj`` could not be pickled and why."""
    found = find_unpicklable(obj)
    if found is None:
        return (
            f"could not pickle the task to send it to a worker process: "
            f"{short_repr(obj)} ({error_text(error)})"
        )
    description, part, part_error = found
    return (
        f"could not pickle {description} of the task to send it to a worker "
        f"process: {short_repr(part)} ({error_text(part_error)})"
    )
