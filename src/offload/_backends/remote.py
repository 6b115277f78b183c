"""What the backends that run tasks in other processes share (processes,
Dask): pickling what crosses, and describing how a worker process ended.

Plain :mod:`pickle` is about ten times faster than cloudpickle, so it is
tried first; cloudpickle takes over when pickle fails (lambdas, closures,
locally defined functions).  cloudpickle is imported only when first needed.

Functions and classes of the main script need care.  Plain pickle names
them (``__main__.work``), and a worker started by ``spawn`` or ``forkserver``
finds them by that name in its own copy of the script, run when it started
(see :mod:`offload._backends.main_script`): so they go by reference, as with plain
``multiprocessing``, and a task's globals (a model loaded once per worker)
live as long as the worker.  Where the worker has no such name (a function
defined under ``if __name__ == "__main__":``, a script fed on standard input,
an interactive session, ``python -c``, the ``fork`` start method) they go by
value with cloudpickle, which copies them and their globals with each task.

Large buffers go out of band when a ``buffers`` callback is given (the
process backend's shared memory, ``offload._backends.process.shm``).  Pickle
protocol 5 hands NumPy arrays and ``PickleBuffer`` objects to that callback
by itself, but writes ``bytes`` and ``bytearray`` into the pickle, and
refuses ``memoryview``.  So where a pickle may carry a large one (a large
argument, or a pickle that came out large), it is made again by a pickler
that sends each ``bytes`` and ``bytearray`` of the callback's ``threshold``
bytes or more as a persistent id wrapping a ``PickleBuffer`` (out of band;
the receiver unpickles with :func:`loads_out_of_band`, which copies it
back into a ``bytes`` or ``bytearray`` of its own), and each
``memoryview`` as a ``PickleBuffer`` with its format and shape (the
receiver gets a view of the buffer it was given, no copy).  Pickles
without large buffers are made exactly as before.

Failures are described by naming the object that could not be pickled, so
that a future FAILS with a message a user can act on.
"""

from __future__ import annotations

import io
import pickle
import signal
import types
from typing import Any

from offload._backends.main_script import names_in_workers
from offload._backends.out_of_band import (
    OutOfBandPickler,
    cloud_pickler_classes,
    holds_large_bytes,
)

#: Protocol 5: out-of-band buffers aside, the fastest for large bytes/arrays.
PROTOCOL = pickle.HIGHEST_PROTOCOL

#: Longest ``repr`` quoted in an error message.
_REPR_LIMIT = 200

#: Size (bytes) from which an argument counts as large: a work item that
#: carries one is pickled straight after its header (no copy to join them)
#: and checked for the main script's functions as it is pickled (no scan
#: of the result).
LARGE_ARGUMENT = 64 * 1024


def dumps_item(
    header: bytes, obj: Any, *, main_by_reference: bool, buffers: Any = None
) -> bytes | memoryview:
    """``header`` followed by ``obj`` pickled for a worker process.

    Parameters
    ----------
    header : bytes
        What goes before the pickle (the work item's id).
    obj : callable
        The work item.
    main_by_reference : bool
        Whether the workers run the main script when they start (``spawn``,
        ``forkserver``), so that its functions may go by reference.
    buffers : callable, optional
        The pickle's ``buffer_callback`` (pickle protocol 5), with a
        ``discard()`` method that forgets what it kept of a pickle that was
        thrown away (a retry with cloudpickle), and a ``threshold``: the
        size from which it takes a buffer out of band, and from which
        ``bytes`` and ``bytearray`` go out of band too (see
        ``offload._backends.out_of_band``); see
        ``offload._backends.process.shm.Outgoing``.

    Runs on the submitting thread.  Raises what cloudpickle raises when
    neither pickler can pickle ``obj``.
    """
    if _carries_large_argument(obj):
        return _dumps_checked(header, obj, main_by_reference, buffers)
    try:
        data = pickle.dumps(obj, PROTOCOL, buffer_callback=buffers)
    except Exception:  # noqa: BLE001 - any pickling failure: try cloudpickle
        _discard(buffers)
        return header + _cloud_fallback(obj, buffers, _arguments(obj))
    if b"__main__" in data and not _by_reference_is_safe(obj, main_by_reference):
        _discard(buffers)
        return header + _cloud_fallback(obj, buffers, _arguments(obj))
    if len(data) >= LARGE_ARGUMENT and _worth_out_of_band(_arguments(obj), buffers):
        # A large bytes deeper in the arguments (in a list, say): pickled
        # in band first; again, out of band, rather than through the pipe.
        _discard(buffers)
        return _dumps_checked(header, obj, main_by_reference, buffers)
    return header + data


def _discard(buffers: Any) -> None:
    if buffers is not None:
        buffers.discard()


def dumps(obj: Any, buffers: Any = None) -> bytes:
    """Pickle ``obj`` for another process: pickle first, then cloudpickle.

    Used in worker processes (messages, results) and for error reports.
    Without cloudpickle, what refers to ``__main__`` goes by reference, as
    with plain :mod:`multiprocessing` (workers import the main module, so its
    top-level functions are found there).  Raises whatever cloudpickle
    raises when neither can pickle ``obj``.  ``buffers`` is as for
    :func:`dumps_item`.
    """
    try:
        data = pickle.dumps(obj, PROTOCOL, buffer_callback=buffers)
    except Exception:  # noqa: BLE001 - any pickling failure: try cloudpickle
        pass
    else:
        if b"__main__" not in data or not _has_cloudpickle():
            if len(data) >= LARGE_ARGUMENT and _worth_out_of_band(obj, buffers):
                # A large bytes (a result, an item...) went in band: again,
                # out of band, rather than through the pipe.
                _discard(buffers)
                return _out_of_band_dumps(obj, buffers, cloud=False)
            return data
    _discard(buffers)
    return _cloud_fallback(obj, buffers, obj)


def _threshold(buffers: Any) -> int | None:
    """The size from which ``buffers`` takes a buffer out of band; None
    without such a callback (Dask, error reports)."""
    return getattr(buffers, "threshold", None)


def _worth_out_of_band(obj: Any, buffers: Any) -> bool:
    """Whether ``obj``, which pickled large, has a large ``bytes`` (or
    ``bytearray``) that ``buffers`` would take out of band."""
    threshold = _threshold(buffers)
    return threshold is not None and holds_large_bytes(obj, threshold)


def _cloud_fallback(obj: Any, buffers: Any, parts: Any) -> bytes:
    """``obj`` pickled with cloudpickle (plain pickle failed, or would
    not do): memoryviews, and large buffers out of band if ``parts`` (what
    to look into: ``obj``, or a work item's arguments) has any."""
    if _threshold(buffers) is None:
        return cloud_dumps(obj, buffers)
    if not _has_cloudpickle():
        # No cloudpickle: ours still takes a memoryview (what plain
        # pickle refuses), else raises what plain pickle raises.
        return _out_of_band_dumps(obj, buffers, cloud=False)
    file = io.BytesIO()
    _cloud_classes()[0](file, buffers).dump(obj)
    data = file.getvalue()
    if len(data) >= LARGE_ARGUMENT and _worth_out_of_band(parts, buffers):
        _discard(buffers)
        return _out_of_band_dumps(obj, buffers, cloud=True)
    return data


def _out_of_band_dumps(obj: Any, buffers: Any, *, cloud: bool) -> bytes:
    """``obj`` pickled with large ``bytes`` and ``bytearray`` out of band."""
    threshold = _threshold(buffers)
    assert threshold is not None  # only called with such a callback
    file = io.BytesIO()
    pickler_class = _cloud_classes()[1] if cloud else OutOfBandPickler
    pickler_class(file, buffers, threshold).dump(obj)
    return file.getvalue()


def _cloud_classes() -> tuple[Any, Any]:
    """``out_of_band.cloud_pickler_classes`` of cloudpickle's pickler (made
    on first use)."""
    global _CLOUD_CLASSES
    if _CLOUD_CLASSES is None:
        _CLOUD_CLASSES = cloud_pickler_classes(_cloudpickle().Pickler)
    return _CLOUD_CLASSES


#: See ``_cloud_classes``; None until first used.
_CLOUD_CLASSES: tuple[Any, Any] | None = None


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


class _ByValue(Exception):
    """A function or class of the main script that workers do not have."""


class _MainReferenceCheck(pickle.Pickler):
    """Pickles, refusing (``_ByValue``) the main script's functions and
    classes that a worker would not find by name.

    ``reducer_override`` is called for each object that is not of a basic
    type (int, str, bytes, list, dict...): a 100 MB argument costs a call or
    two, not a scan of the pickle.
    """

    def __init__(
        self, file: Any, names: frozenset[str] | None, buffers: Any = None
    ) -> None:
        super().__init__(file, PROTOCOL, buffer_callback=buffers)
        self._names = names

    def reducer_override(self, obj: Any) -> Any:
        _refuse_by_value(obj, self._names)
        return NotImplemented


class _CheckedOutOfBand(OutOfBandPickler):
    """``_MainReferenceCheck`` that also sends large ``bytes`` out of band."""

    def __init__(
        self, file: Any, names: frozenset[str] | None, buffers: Any, threshold: int
    ) -> None:
        super().__init__(file, buffers, threshold)
        self._names = names

    def reducer_override(self, obj: Any) -> Any:
        _refuse_by_value(obj, self._names)
        return super().reducer_override(obj)


def _refuse_by_value(obj: Any, names: frozenset[str] | None) -> None:
    """Raise ``_ByValue`` if ``obj`` is a function or class of the main
    script that is not among ``names`` (what workers find by name)."""
    if isinstance(obj, (types.FunctionType, type)) and getattr(
        obj, "__module__", None
    ) == "__main__":
        qualname = getattr(obj, "__qualname__", "")
        if names is None or qualname.partition(".")[0] not in names:
            raise _ByValue


def _by_reference_is_safe(obj: Any, main_by_reference: bool) -> bool:
    """Whether every function and class of the main script in ``obj`` is one
    that workers find by name (pickles ``obj`` again to know).  Without
    cloudpickle, by reference is the only way: as with plain
    ``multiprocessing``, it works for the script's top-level names."""
    if not _has_cloudpickle():
        return True
    if not main_by_reference:
        return False
    # Buffers out of band: a large array is looked at, not copied.
    checker = _MainReferenceCheck(_Discard(), names_in_workers(), _skip_buffer)
    try:
        checker.dump(obj)
    except _ByValue:
        return False
    return True


def _skip_buffer(buffer: Any) -> bool:
    return False


class _Discard:
    """A file that forgets what is written to it."""

    __slots__ = ()

    def write(self, data: Any) -> int:
        return len(data)


def _dumps_checked(
    header: bytes, obj: Any, main_by_reference: bool, buffers: Any
) -> memoryview:
    """``header`` and the pickle of ``obj``, in one buffer and one pass."""
    buffer = io.BytesIO()
    buffer.write(header)
    threshold = _threshold(buffers)
    pickler: pickle.Pickler
    if _has_cloudpickle():
        names = names_in_workers() if main_by_reference else None
        if threshold is None:
            pickler = _MainReferenceCheck(buffer, names, buffers)
        else:
            pickler = _CheckedOutOfBand(buffer, names, buffers, threshold)
    elif threshold is None:
        pickler = pickle.Pickler(buffer, PROTOCOL, buffer_callback=buffers)
    else:
        pickler = OutOfBandPickler(buffer, buffers, threshold)
    try:
        pickler.dump(obj)
    except Exception:  # noqa: BLE001 - _ByValue, or pickle fails: cloudpickle
        _discard(buffers)
        buffer = io.BytesIO()
        buffer.write(header)
        _cloud_dump(obj, buffer, buffers)
    return buffer.getbuffer()


def _arguments(obj: Any) -> list[Any]:
    """The arguments of the work item ``obj`` (a task runner's task, a
    function task, a ``functools.partial``), as far as they are found."""
    task = getattr(obj, "task", None)
    if task is not None and hasattr(obj, "cancel_flag"):
        obj = task  # a TaskRunner: look at its task's arguments
    args = getattr(obj, "args", None)
    kwargs = getattr(obj, "kwargs", None)
    if kwargs is None:
        kwargs = getattr(obj, "keywords", None)  # functools.partial
    values = list(args) if isinstance(args, tuple) else []
    if isinstance(kwargs, dict):
        values.extend(kwargs.values())
    return values


def _carries_large_argument(obj: Any) -> bool:
    """Whether the work item ``obj`` has an argument of LARGE_ARGUMENT bytes
    or more (bytes, bytearray, memoryview, or an array with ``nbytes``)."""
    for value in _arguments(obj):
        if isinstance(value, (bytes, bytearray)):
            size = len(value)
        elif isinstance(value, memoryview):
            size = value.nbytes
        elif getattr(type(value), "nbytes", None) is not None:
            size = getattr(value, "nbytes", 0)  # NumPy and other arrays
        else:
            continue
        if isinstance(size, int) and size >= LARGE_ARGUMENT:
            return True
    return False


def cloud_dumps(obj: Any, buffers: Any = None) -> bytes:
    """Pickle ``obj`` with cloudpickle (imported on first use)."""
    return _cloudpickle().dumps(obj, PROTOCOL, buffer_callback=buffers)


def _cloud_dump(obj: Any, file: Any, buffers: Any = None) -> None:
    threshold = _threshold(buffers)
    if threshold is None:
        _cloudpickle().dump(obj, file, PROTOCOL, buffer_callback=buffers)
    else:
        _cloud_classes()[1](file, buffers, threshold).dump(obj)


def _cloudpickle() -> Any:
    try:
        import cloudpickle
    except ImportError:
        raise RuntimeError(
            "offload's MultiprocessingContext needs cloudpickle to send "
            "lambdas, closures and __main__ functions to worker processes; "
            "install it with: pip install 'offload[process]'"
        ) from None
    return cloudpickle


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


def describe_exit(exitcode: int | None) -> str:
    """How a process ended, in words: "exited with code 3", "was killed by SIGKILL"."""
    if exitcode is None:
        return "is still running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        text = f"was killed by {name}"
        if -exitcode == signal.SIGKILL:
            text += " (by a user, the pool, or the out-of-memory killer)"
        elif -exitcode == signal.SIGSEGV:
            text += " (a segmentation fault, in C code or an extension)"
        return text
    return f"exited with code {exitcode}"
