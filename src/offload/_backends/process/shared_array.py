"""NumPy arrays allocated in shared memory (``offload.api.shared_array``).

An array made by ``shared_array`` lives in a shared-memory segment.
Pickled (sent to or from a worker process), it is not copied: the pickle
names the segment and where in it the array is (a view, a slice), and the
receiver maps the same memory.  So filling it in the application and
reading it in a worker copies nothing, and both sides see each other's
writes: the array is shared, not snapshotted.

Who unlinks the segment:

* the process that made it, once its last array there is dropped; a work
  item that carries it holds it too (``shm.hold``), so the worker finds it
  even if the application dropped it right after submit;
* one that a worker made and sent to the application: the application,
  once it has mapped it (the worker hands it over and no longer unlinks
  it); a second send works while the application still holds it;
* a worker's that it never sent: the worker, or the pool if the worker
  died (the worker's pid is in the name: ``shm.unlink_made_by``);
* the resource tracker, should the application die.

This module imports NumPy; offload imports it only when ``shared_array``
is first used, or when an array made by it is received.
"""

from __future__ import annotations

import atexit
import math
import os
import pickle
import threading
import weakref
from multiprocessing import shared_memory
from typing import Any

import numpy

from offload._backends.process import shm, tracker
from offload._backends.process.channel import current_channel


class _Segment:
    """A segment of shared arrays in this process (while its view lives)."""

    __slots__ = ("name", "address", "size", "view", "maker", "handed_over")

    def __init__(self, name: str, view: memoryview, made_here: bool) -> None:
        self.name = name
        self.size = view.nbytes
        self.address = (
            numpy.frombuffer(view, dtype=numpy.uint8).ctypes.data if self.size else 0
        )
        #: Weak: the arrays keep the view alive, not this record.
        self.view = weakref.ref(view)
        #: The pid of the process that made it, if this one did (a forked
        #: child has a copy of this record, and did not).
        self.maker = os.getpid() if made_here else None
        #: A worker sent what it made: the application unlinks it.
        self.handed_over = False


#: The segments of shared arrays alive in this process, by name.
_segments: dict[str, _Segment] = {}
_lock = threading.Lock()


def _forget_in_child() -> None:
    # A forked child: the lock may have been held at the fork.  The
    # parent's arrays are still mapped in it (copies of the mappings), and
    # stay usable; the child does not unlink them (see _release).
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)


@atexit.register
def _unlink_at_exit() -> None:
    # Arrays still alive at exit: unlink what this process made (rather
    # than leave it to the resource tracker, which warns of leaks).
    with _lock:
        names = [s.name for s in _segments.values() if _mine(s) and not s.handed_over]
    for name in names:
        shm.unlink_name(name)


class SharedArray(numpy.ndarray):
    """A NumPy array in shared memory; pickles by reference, not by value.

    What ``shared_array`` returns, and views and slices of it.  An
    array computed from one (``a + 1``) is in ordinary memory: it pickles
    as an ordinary array.
    """

    def __reduce_ex__(self, protocol: Any) -> Any:
        found = _segment_of(self)
        if found is None:
            return self.view(numpy.ndarray).__reduce_ex__(protocol)
        segment, view = found
        shm.hold(view)
        if _mine(segment) and current_channel() is not None:
            segment.handed_over = True
        offset = self.__array_interface__["data"][0] - segment.address
        return (
            _rebuild,
            (segment.name, segment.size, offset, self.shape, self.dtype, self.strides),
        )


def make_shared_array(shape: Any, dtype: Any) -> SharedArray:
    """See ``offload.api.shared_array``."""
    dtype = numpy.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in shape):
        raise ValueError(
            "shared_array(shape, dtype): shape must be a non-negative int or "
            f"a tuple of them, got {shape!r}"
        )
    nbytes = math.prod(shape) * dtype.itemsize
    made = shm.new_segment(max(nbytes, 1))
    view = _view_of(made, nbytes)
    segment = _Segment(made.name, view, made_here=True)
    with _lock:
        _segments[made.name] = segment
    weakref.finalize(view, _release, made, segment).atexit = False
    return _array_on(view, 0, shape, dtype, None)


def _rebuild(
    name: str, size: int, offset: int, shape: tuple, dtype: Any, strides: tuple
) -> SharedArray:
    """Unpickle a shared array: the same memory, mapped here if need be."""
    with _lock:
        segment = _segments.get(name)
        view = segment.view() if segment is not None else None
    if view is None:
        view = _attach(name, size)
    return _array_on(view, offset, shape, dtype, strides)


def _attach(name: str, size: int) -> memoryview:
    # The application takes over what a worker made and sent (it unlinks
    # the name now; the memory stays while mapped); a worker maps what the
    # application made, which stays the application's to unlink.
    take_over = current_channel() is None
    try:
        attached = shm.attach_segment(name, unlink=take_over)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"the segment {name!r} of a shared array is gone: the process that "
            "made it dropped the array before it arrived here (keep a "
            "reference to a shared array until the task that receives it "
            "is done)"
        ) from None
    view = _view_of(attached, size)
    segment = _Segment(name, view, made_here=False)
    with _lock:
        _segments[name] = segment
    weakref.finalize(view, _release, attached, segment).atexit = False
    return view


def _view_of(segment: shared_memory.SharedMemory, size: int) -> memoryview:
    buffer = segment.buf
    assert buffer is not None  # None only once closed
    return buffer[:size]


def _array_on(
    view: memoryview, offset: int, shape: tuple, dtype: Any, strides: tuple | None
) -> SharedArray:
    # Through a PickleBuffer: NumPy keeps what it is given (as the base of
    # the array), and this keeps ``view`` alive with it.
    holder: Any = pickle.PickleBuffer(view)
    array = numpy.ndarray(shape, dtype=dtype, buffer=holder, offset=offset, strides=strides)
    return array.view(SharedArray)


def _segment_of(array: numpy.ndarray) -> tuple[_Segment, memoryview] | None:
    """The shared segment ``array``'s data is in, with its view; or None."""
    start = array.__array_interface__["data"][0]
    with _lock:
        for segment in _segments.values():
            if segment.address <= start < segment.address + max(segment.size, 1):
                view = segment.view()
                if view is not None:
                    return segment, view
    return None


def _mine(segment: _Segment) -> bool:
    """Whether this process made ``segment``."""
    return segment.maker == os.getpid()


def _release(attached: shared_memory.SharedMemory, segment: _Segment) -> None:
    """The last array on ``segment`` is gone: unmap it, and unlink it if
    this process made it and did not hand it over."""
    with _lock:
        if _segments.get(segment.name) is segment:
            del _segments[segment.name]
    if _mine(segment) and not segment.handed_over:
        try:
            with tracker.guard:
                attached.unlink()
        except OSError:
            pass  # gone already
    attached.close()
