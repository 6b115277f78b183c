"""Large buffers between the application and its workers, in shared memory.

Pickle protocol 5 hands every buffer it meets (a NumPy array's data, a
``PickleBuffer``) to a ``buffer_callback``.  :class:`Outgoing` is that
callback: a buffer of ``THRESHOLD`` bytes or more is copied into a
shared-memory segment (the one copy the sender makes) and left out of the
pickle, which then carries only the segment's name.  The receiver maps the
segment and rebuilds the object on it, copying nothing::

    sender                                   receiver
    ------                                   --------
    pickle(obj, buffer_callback=outgoing)    split(data) -> pickle, listing
      buffer >= THRESHOLD: a segment,        attach(listing): map each one
      copy the buffer in, keep its name      pickle.loads(data, buffers=maps)
    data = pickle + trailer(listing)

The trailer goes after the pickle, and a pickle always ends with its STOP
opcode (``.``), so a last byte of ``S`` says a trailer is there: data
without large buffers is exactly as before, and costs one byte compare.

Who unlinks (removes the name; the memory goes with the last mapping):

* arguments (the application makes the segment): the application, when it
  drops the work item, that is once the worker reported it done, the
  worker died, or the pool was terminated; it keeps the segment for reuse
  first (see ``offload._backends.process.segment_cache``), and may lend it
  to the worker of a later item for that item's results;
* results and messages in a segment a worker made: the application, as
  soon as it has mapped it, before it unpickles; if the worker dies before
  the application read them, :func:`unlink_made_by` removes what that
  worker made (its pid is in the names), without the worker's help;
* should the application die, ``multiprocessing``'s resource tracker
  unlinks what is left: every segment is registered with it when made,
  and the workers share the application's tracker.
"""

from __future__ import annotations

import itertools
import os
import pickle
import secrets
import threading
import weakref
from functools import partial
from multiprocessing import shared_memory
from typing import Any

from offload._backends.out_of_band import hold_while_alive
from offload._backends.process import segment_cache, tracker, worker_segments
from offload._backends.process.worker_segments import (
    accept_loans,
    attach_untracked,
    done_with,
    take_spare,
)

#: Smallest buffer (bytes) sent through shared memory rather than the pipe.
#: A segment costs a few system calls and page faults; below about a
#: megabyte the pipe is as fast.  ``OFFLOAD_SHM_THRESHOLD`` (in the
#: environment of the application, inherited by its workers) overrides it.
THRESHOLD = int(os.environ.get("OFFLOAD_SHM_THRESHOLD", str(1 << 20)))

#: ``(names, sizes, lent, loans)``: the segments of the buffers, their
#: sizes, whether each is one the receiver lent, and the names of the
#: segments lent with a work item for its results (see ``Outgoing``).
Listing = tuple[list[str], list[int], list[bool], list[str]]

#: Last byte of data that has a trailer of segments.
_MARK = b"S"[0]

#: Bytes of the trailer's length field.
_LENGTH = 4

_counter = itertools.count()

#: (pid, prefix) of this process; a forked child makes its own.
_prefix: tuple[int, str] = (-1, "")

#: The ``Outgoing`` of the pickle this thread is making, if any.
_current = threading.local()

class Outgoing:
    """The ``buffer_callback`` of one pickle: puts large buffers in segments.

    Runs on the thread that pickles (the submitting thread for arguments,
    a worker's flushing thread for messages).  Truthy once it used a
    segment.  Its segments are released by :meth:`discard`, or when it is
    garbage collected (the pool drops a work item with its ``Outgoing``
    once the item is over), unless :meth:`keep` handed them over.

    Parameters
    ----------
    reuse : bool
        The application's arguments: take segments from the cache and give
        them back to it when done with.  Otherwise (a worker's messages),
        write into a segment the application lent if one fits, else into
        a new one, unmapped at once: the application unlinks it.
    """

    __slots__ = ("_reuse", "_parts", "_held", "__weakref__")

    def __init__(self, reuse: bool = False) -> None:
        # Cheap until a large buffer comes: one is made per chunk and per
        # work item, and most carry none.
        self._reuse = reuse
        self._parts: _Parts | None = None
        #: What must live as long as this (see :func:`hold`).
        self._held: list[Any] | None = None

    def __enter__(self) -> Outgoing:
        """Be the current pickle's ``Outgoing`` on this thread."""
        _current.outgoing = self
        return self

    def __exit__(self, *exc_info: Any) -> None:
        _current.outgoing = None

    def __bool__(self) -> bool:
        return self._parts is not None and bool(self._parts.names)

    @property
    def threshold(self) -> int:
        """``THRESHOLD``: also the size from which ``bytes`` and ``bytearray``
        go out of band (``offload._backends.out_of_band``)."""
        return THRESHOLD

    def __call__(self, buffer: pickle.PickleBuffer) -> bool:
        """Copy ``buffer`` into a segment if large; False if it did (out of
        band), True if the pickle should carry it."""
        try:
            view = buffer.raw()
        except BufferError:
            return True  # not contiguous: pickle copies it in band
        size = view.nbytes
        if size < THRESHOLD:
            return True
        parts = self._parts
        if parts is None:
            parts = self._parts = _Parts()
        if not self._reuse:
            spare = take_spare(size)
            if spare is not None:
                _write_lent(spare, view)
                parts.append(spare.name, size, True)
                return False
        segment = segment_cache.take(size, _spare, parts.segments) if self._reuse else None
        if segment is None:
            segment = _create(size, reusable=self._reuse)
            write = _write_new
        else:  # taken while being warmed: cold (see segment_cache.take)
            write = _write_new if segment_cache.is_cold(segment) else _write
        parts.segments.append(segment)
        if parts.finalizer is None:
            if self._reuse:
                done: Any = segment_cache.give_back
                args: tuple = (parts.segments, parts.loans)
            else:
                done, args = segment_cache.unlink_all, (parts.segments,)
            parts.finalizer = weakref.finalize(self, _in_maker, os.getpid(), done, *args)
        write(segment, view)
        if not self._reuse:
            segment.close()  # the copy is made: no need to keep it mapped
        parts.append(segment.name, size, False)
        return False

    def lend(self) -> None:
        """Lend the worker segments for its results, one as big as each
        argument: cached ones, else new ones (application side; see
        ``segment_cache.lend``)."""
        parts = self._parts
        if parts is None:
            return
        for size in parts.sizes:
            name = segment_cache.lend(size, _spare)
            if name is None:
                return
            parts.loans.append(name)

    def trailer(self) -> bytes:
        """What goes after the pickle to name the segments."""
        parts = self._parts
        assert parts is not None  # only called when truthy
        listing = pickle.dumps(
            (parts.names, parts.sizes, parts.lent, parts.loans), pickle.HIGHEST_PROTOCOL
        )
        return listing + len(listing).to_bytes(_LENGTH, "little") + bytes([_MARK])

    def discard(self) -> None:
        """Release the segments used so far (the pickle is not sent)."""
        parts, self._parts = self._parts, None
        if parts is not None and parts.finalizer is not None:
            parts.finalizer()

    def keep(self) -> None:
        """Hand the segments over to the receiver: it unlinks them."""
        parts, self._parts = self._parts, None
        if parts is not None and parts.finalizer is not None:
            parts.finalizer.detach()


class _Parts:
    """What an ``Outgoing`` put in shared memory."""

    __slots__ = ("names", "sizes", "lent", "segments", "loans", "finalizer")

    def __init__(self) -> None:
        self.names: list[str] = []
        self.sizes: list[int] = []
        #: For each name: whether it is a segment the receiver lent.
        self.lent: list[bool] = []
        #: The segments made or taken from the cache.
        self.segments: list[shared_memory.SharedMemory] = []
        #: Names of cached segments lent to the worker (see lend()).
        self.loans: list[str] = []
        self.finalizer: weakref.finalize | None = None

    def append(self, name: str, size: int, lent: bool) -> None:
        self.names.append(name)
        self.sizes.append(size)
        self.lent.append(lent)


def hold(obj: Any) -> None:
    """Keep ``obj`` alive as long as the ``Outgoing`` of the pickle being
    made on this thread, if any (a shared array's memory, for the work item
    that names it)."""
    outgoing = getattr(_current, "outgoing", None)
    if outgoing is not None:
        if outgoing._held is None:
            outgoing._held = []
        outgoing._held.append(obj)


def new_segment(size: int) -> shared_memory.SharedMemory:
    """A new segment of ``size`` bytes, named as this process's."""
    return _create(size)


def attach_segment(name: str, *, unlink: bool) -> shared_memory.SharedMemory:
    """Map the segment ``name``; with ``unlink``, remove its name too (this
    process takes it over).  Raises FileNotFoundError if it is gone."""
    if unlink:
        with tracker.guard:
            segment = shared_memory.SharedMemory(name=name)
            segment.unlink()
        return segment
    return attach_untracked(name)


def unlink_name(name: str) -> None:
    """Unlink the segment ``name`` if it is still there."""
    _unlink(name)


def split(data: Any) -> tuple[Any, Listing | None]:
    """``(pickle, listing)`` of data with a trailer, ``(data, None)`` of data
    without one."""
    if not data or data[-1] != _MARK:
        return data, None
    view = memoryview(data)
    end = len(view) - 1 - _LENGTH
    length = int.from_bytes(view[end:-1], "little")
    start = end - length
    return view[:start], pickle.loads(view[start:end])


def attach(listing: Listing, *, unlink: bool) -> list[pickle.PickleBuffer]:
    """Map the segments of ``listing``: one buffer each for ``pickle.loads``.

    A segment stays mapped while its buffer (or what unpickling built on
    it, an array) is alive.  With ``unlink`` (the application, reading a
    worker's chunk), each name is removed once mapped (even if mapping
    another fails), so the memory goes with the last mapping; a segment
    the application lent is read through its own mapping instead, and
    returns to the cache once dropped.  Without (a worker, reading an
    item), the segments lent with the item are mapped for its results.
    Raises OSError if a segment is gone.
    """
    names, sizes, lent, loans = listing
    buffers: list[pickle.PickleBuffer] = []
    error: OSError | None = None
    for name, size, borrowed in zip(names, sizes, lent, strict=True):
        try:
            if borrowed:
                buffers.append(_returned(name, size))
            else:
                buffers.append(_map(name, size, unlink))
        except OSError as failure:
            error = failure
    if loans and not unlink:
        accept_loans(loans)
    if error is not None:
        raise error
    return buffers


def unlink_made_by(pid: int) -> None:
    """Unlink the payload segments that process ``pid`` made and nobody took
    (a worker that died with results in flight).  Linux lists segments in
    ``/dev/shm``; elsewhere this does nothing."""
    try:
        entries = os.listdir(segment_cache.SHM_DIR)
    except OSError:
        return
    stem = _pid_stem(pid)
    for entry in entries:
        head, _, tail = entry.partition("_p")
        if tail and head[:-6] == stem and head.startswith("ofl"):
            _unlink(entry)


# Private ---------------------------------------------------------------------


def _in_maker(pid: int, release: Any, *args: Any) -> None:
    """``release(*args)``, unless this is a forked copy of the process that
    made the segments (their copies there are the parent's, not its own)."""
    if os.getpid() == pid:
        release(*args)


def _pid_stem(pid: int) -> str:
    # Short names: macOS allows 31 characters.  The cancel flags' segments
    # (process.flags) start the same way, with another suffix.
    return f"ofl{pid % 0xFFFFF:x}"


def _new_name() -> str:
    global _prefix
    pid = os.getpid()
    if _prefix[0] != pid:
        _prefix = (pid, _pid_stem(pid) + secrets.token_hex(3))
    return f"{_prefix[1]}_p{next(_counter):x}"


def _create(size: int, reusable: bool = False) -> shared_memory.SharedMemory:
    while True:
        try:
            with tracker.guard:
                segment = shared_memory.SharedMemory(name=_new_name(), create=True, size=size)
        except FileExistsError:
            continue  # a dead process of the same pid left one: next name
        if reusable:
            segment_cache.made(segment)
        return segment


_spare = partial(_create, reusable=True)  # makes spares: see segment_cache.take


def _write(segment: Any, view: memoryview) -> None:
    buffer = segment.buf
    assert buffer is not None  # None only once closed
    buffer[: view.nbytes] = view


def _write_new(segment: shared_memory.SharedMemory, view: memoryview) -> None:
    """:func:`_write` to a segment whose mapping here is untouched (made, or
    lent to this worker): ``pwrite`` to its file in ``/dev/shm`` fills the
    pages in one kernel pass, the mapping faults per 4 KiB page (100 MB: 40
    ms against 75 new, 25 against 40 lent; ``benchmarks/README.md``)."""
    try:
        fd = segment_cache.open_file(segment, os.O_WRONLY)
    except OSError:
        # Not Linux, or no /dev/shm: through the mapping.
        _write(segment, view)
        return
    try:
        size, done = view.nbytes, 0
        while done < size:
            done += os.pwrite(fd, view[done:], done)
    finally:
        os.close(fd)


def _map(name: str, size: int, unlink: bool) -> pickle.PickleBuffer:
    if unlink:
        # Attaching registers the name with the resource tracker (a no-op:
        # its maker registered it in the same tracker); unlink() removes it.
        with tracker.guard:
            segment = shared_memory.SharedMemory(name=name)
            segment.unlink()
    else:
        segment = worker_segments.open_segment(name)
        worker_segments.mapping_argument(name, True)
    return _buffer_of(segment, size, _close, segment, name)


def _returned(name: str, size: int) -> pickle.PickleBuffer:
    """A result in a segment the application lent: through its own mapping."""
    segment = segment_cache.returned(name)
    return _buffer_of(
        segment, size, _in_maker, os.getpid(), segment_cache.give_back, [segment], []
    )


def _buffer_of(
    segment: shared_memory.SharedMemory, size: int, release: Any, *args: Any
) -> pickle.PickleBuffer:
    """The first ``size`` bytes of ``segment``; ``release(*args)`` once the
    last user of them is gone."""
    memory = segment.buf
    assert memory is not None  # None only once closed
    view = memory[:size]
    # Released after the last user (close() before would fail: the view is
    # exported).  Wrapped: NumPy makes its own memoryview of what it is
    # given, which would keep the mapping but not ``view``; of a
    # PickleBuffer, that memoryview keeps the PickleBuffer, hence ``view``.
    # Not at exit: arrays still alive then keep their views exported.
    weakref.finalize(view, release, *args).atexit = False
    buffer = pickle.PickleBuffer(view)
    # ``view`` stays reachable while the PickleBuffer lives (a result a
    # user holds): see ``out_of_band.hold_while_alive``.
    hold_while_alive(buffer, view)
    return buffer


def _close(segment: Any, name: str) -> None:
    worker_segments.mapping_argument(name, False)
    done_with(segment)


def _write_lent(spare: Any, view: memoryview) -> None:
    """Write a result into the segment ``spare`` the application lent."""
    try:
        if isinstance(spare, worker_segments.Mapping):
            _write(spare, view)  # mapped with its page table filled: no faults
        else:
            _write_new(spare, view)  # this mapping of it is new
    finally:
        done_with(spare)


def _unlink(name: str) -> None:
    try:
        attach_segment(name, unlink=True).close()
    except OSError:
        pass  # gone already
