"""Large ``bytes``, ``bytearray`` and ``memoryview`` out of the pickle.

Pickle protocol 5 hands a NumPy array's data and a ``PickleBuffer`` to its
``buffer_callback`` (the process backend puts those of ``threshold`` bytes
or more in shared memory), but it writes ``bytes`` and ``bytearray`` into
the pickle whatever their size, and refuses ``memoryview``.  The picklers
here close that gap; ``offload._backends.remote`` uses them only for a
pickle that may carry a large buffer, so that the others cost nothing more:

* a ``bytes`` or ``bytearray`` of ``threshold`` bytes or more becomes a
  persistent id ``(kind, PickleBuffer)``: the buffer goes to the callback
  (out of band), and :func:`loads_out_of_band` turns it back into a
  ``bytes`` or ``bytearray``.  That is one copy out of the receiver's
  buffer, and it must be: a ``bytes`` owns its memory (immutable, and
  alive as long as any user keeps it), a ``bytearray`` too (resizable).
  (Persistent ids, because the pickler asks no hook before it writes a
  ``bytes``: ``reducer_override`` sees neither type.)
* a ``memoryview`` (any size) goes as a ``PickleBuffer`` with its format
  and shape, and the receiver gets a view of the buffer it was given,
  cast back: no copy (in shared memory, a view of the segment).  A view
  that is not C-contiguous is copied first (the buffer protocol hands
  over contiguous memory only).  Read-only stays read-only, writable stays
  writable (the receiver's own copy: it was made when the sender pickled).

The receiver must unpickle with :func:`loads_out_of_band` when the pickle
went with out-of-band buffers (the persistent ids are only made for
buffers that the callback takes out of band).
"""

from __future__ import annotations

import collections
import io
import pickle
import weakref
from typing import Any

#: Kinds of the persistent ids.
_BYTES = 0
_BYTEARRAY = 1

#: Formats ``memoryview.cast`` accepts (native single characters).
_CASTABLE = frozenset("bBchHiIlLqQnNfde?P")

#: How deep into containers :func:`holds_large_bytes` looks, and at how
#: many values in all.
_DEPTH = 32
_BUDGET = 4096

#: Types that hold no buffer, skipped at once.
_ATOMS = frozenset({int, float, str, bool, complex, type(None)})


def _persistent_id(pickler: Any, obj: Any) -> Any:
    # Called for every object pickled: types first, the cheapest test.
    kind = type(obj)
    if (kind is bytes or kind is bytearray) and len(obj) >= pickler.threshold:
        # The same object twice: the same id (the pickler memoizes the
        # tuple), one buffer, one copy in the segment.
        found = pickler.seen.get(id(obj))
        if found is None:
            found = (_BYTES if kind is bytes else _BYTEARRAY, pickle.PickleBuffer(obj))
            pickler.seen[id(obj)] = found
        return found
    return None


class OutOfBandPickler(pickle.Pickler):
    """A pickler (protocol 5) that sends large ``bytes`` and ``bytearray``
    out of band, and pickles ``memoryview`` objects.

    Parameters
    ----------
    file : file-like
        Where the pickle goes.
    buffers : callable
        The ``buffer_callback``.
    threshold : int
        Size (bytes) from which a ``bytes`` or ``bytearray`` goes out of
        band: the one from which ``buffers`` takes a buffer out of band.
    """

    def __init__(self, file: Any, buffers: Any, threshold: int) -> None:
        super().__init__(file, pickle.HIGHEST_PROTOCOL, buffer_callback=buffers)
        self.threshold = threshold
        self.seen: dict[int, tuple[int, pickle.PickleBuffer]] = {}

    def persistent_id(self, obj: Any) -> Any:
        return _persistent_id(self, obj)

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is memoryview:
            return reduce_memoryview(obj)
        return NotImplemented


def cloud_pickler_classes(base: Any) -> tuple[type, type]:
    """Picklers on top of cloudpickle's ``base`` (its own ``reducer_override``
    kept): one that pickles memoryviews as here (cloudpickle would send
    their bytes), and one that also sends large ``bytes`` and ``bytearray``
    out of band, as ``OutOfBandPickler``."""
    # cloudpickle's reducer_override defers to the dispatch table for what
    # is not a function or class: memoryview found there, at no cost to
    # other objects.
    table = collections.ChainMap({memoryview: reduce_memoryview}, base.dispatch_table)

    class CloudViewsPickler(base):
        dispatch_table = table

        def __init__(self, file: Any, buffers: Any) -> None:
            super().__init__(file, pickle.HIGHEST_PROTOCOL, buffer_callback=buffers)

    class CloudOutOfBandPickler(base):
        dispatch_table = table

        def __init__(self, file: Any, buffers: Any, threshold: int) -> None:
            super().__init__(file, pickle.HIGHEST_PROTOCOL, buffer_callback=buffers)
            self.threshold = threshold
            self.seen: dict[int, tuple[int, pickle.PickleBuffer]] = {}

        def persistent_id(self, obj: Any) -> Any:
            return _persistent_id(self, obj)

    return CloudViewsPickler, CloudOutOfBandPickler


def reduce_memoryview(view: memoryview) -> tuple:
    """How a ``memoryview`` pickles: its buffer, format and shape."""
    form = view.format.lstrip("@")
    if form not in _CASTABLE:
        raise TypeError(
            f"cannot send a memoryview of format {view.format!r} to another "
            "process (only native single-character formats can be rebuilt); "
            "send view.cast('B') and cast it back, or the object it views"
        )
    shape = view.shape
    if not view.c_contiguous:
        # The one way to hand it over: a contiguous copy, as writable as it was.
        view = memoryview(bytes(view) if view.readonly else bytearray(view))
    return _rebuild_memoryview, (pickle.PickleBuffer(view), form, shape)


def _rebuild_memoryview(buffer: Any, form: Any, shape: tuple[int, ...]) -> memoryview:
    """A memoryview of ``buffer`` (bytes, bytearray, or the receiver's own
    buffer when it came out of band) with the sender's format and shape."""
    view = memoryview(buffer)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    if form != "B" or len(shape) != 1:
        # cast() refuses zeros in a shape.
        view = view.cast(form) if 0 in shape else view.cast(form, shape)
    exporter = view.obj
    if type(exporter) is memoryview:
        hold_while_alive(view, exporter)  # a segment's view: see below
    return view


def hold_while_alive(holder: Any, view: memoryview) -> None:
    """Keep ``view`` reachable from a global as long as ``holder`` (an
    object made on it, given to a user) is alive.

    Before Python 3.13, the garbage collector may clear a memoryview that
    others still export from when they are all in one garbage cycle (a
    result held by a future, say) and crash the process.  Held here,
    ``view`` is never part of such a cycle: it goes after its users, in
    order, by reference counting.
    """
    weakref.finalize(holder, _drop, view).atexit = False


def _drop(view: memoryview) -> None:
    """Nothing: the finalizer's reference to ``view`` goes with it."""


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        kind, buffer = pid
        if kind == _BYTES:
            return bytes(buffer)
        if kind == _BYTEARRAY:
            return bytearray(buffer)
        raise pickle.UnpicklingError(f"unknown persistent id kind {kind!r}")


def loads_out_of_band(data: Any, buffers: list[Any]) -> Any:
    """Unpickle ``data`` whose out-of-band buffers are ``buffers``."""
    return _Unpickler(io.BytesIO(data), buffers=buffers).load()


def holds_large_bytes(obj: Any, threshold: int) -> bool:
    """Whether ``obj`` has a ``bytes``, ``bytearray`` or ``memoryview`` of
    ``threshold`` bytes or more, in tuples, lists, sets, dicts and objects'
    ``__dict__`` and ``__slots__``, up to ``_DEPTH`` levels down.  Looked
    at only when a pickle came out large, and at ``_BUDGET`` values at
    most: beside pickling what made it large, the look costs little.  A
    container with more values than the budget has left (a list of a
    million numbers) is not searched, but the search goes on elsewhere."""
    budget = _BUDGET
    stack = [(obj, _DEPTH)]
    while stack:
        obj, depth = stack.pop()
        kind = type(obj)
        if kind is bytes or kind is bytearray:
            if len(obj) >= threshold:
                return True
            continue
        if kind is memoryview:
            if obj.nbytes >= threshold:
                return True
            continue
        if depth <= 0 or kind in _ATOMS:
            continue
        if kind is tuple or kind is list or kind is set or kind is frozenset:
            values: Any = obj
        elif kind is dict:
            values = obj.values()
        else:
            values = _attribute_values(obj)
        if len(values) > budget:
            continue
        budget -= len(values)
        stack.extend((value, depth - 1) for value in values)
    return False


def _attribute_values(obj: Any) -> list[Any]:
    """The values in ``obj``'s ``__dict__`` and ``__slots__`` (a dataclass
    with ``slots=True``), read without running its code: slots through
    their descriptors, so an unset one raises no ``__getattr__``."""
    try:
        values = list(vars(obj).values())
    except Exception:  # noqa: BLE001 - no __dict__ (or a strange one)
        values = []
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{klass.__name__.lstrip('_')}{name}"  # mangled
            member = klass.__dict__.get(name)
            if member is None or name in ("__dict__", "__weakref__"):
                continue
            try:
                values.append(member.__get__(obj, klass))
            except Exception:  # noqa: BLE001 - unset, or not a plain slot
                continue
    return values
