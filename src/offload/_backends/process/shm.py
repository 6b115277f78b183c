"""Large buffers between the application and its workers, in shared memory.

Pickle protocol 5 hands every buffer it meets (a NumPy array's data, a
``PickleBuffer``) to a ``buffer_callback``.  :class:`Outgoing` is that
callback: a buffer of ``THRESHOLD`` bytes or more is copied into a new
shared-memory segment (the one copy the sender makes) and left out of the
pickle, which then carries only the segment's name.  The receiver maps the
segment and rebuilds the object on it, copying nothing::

    sender                                   receiver
    ------                                   --------
    pickle(obj, buffer_callback=outgoing)    split(data) -> pickle, names
      buffer >= THRESHOLD: new segment,      attach(names): map each segment
      copy the buffer in, keep its name      pickle.loads(data, buffers=maps)
    data = pickle + trailer(names)

The trailer goes after the pickle, and a pickle always ends with its STOP
opcode (``.``), so a last byte of ``S`` says a trailer is there: data
without large buffers is exactly as before, and costs one byte compare.

Who unlinks (removes the name; the memory goes when the last mapping does):

* arguments (the application makes the segment): the application, when it
  drops the work item, that is once the worker reported it done, the
  worker died, or the pool was terminated (see ``Outgoing``);
* results and messages (a worker makes the segment): the application, as
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
from multiprocessing import shared_memory
from typing import Any

#: Smallest buffer (bytes) sent through shared memory rather than the pipe.
#: A segment costs a few system calls and page faults; below about a
#: megabyte the pipe is as fast.  ``OFFLOAD_SHM_THRESHOLD`` (in the
#: environment of the application, inherited by its workers) overrides it.
THRESHOLD = int(os.environ.get("OFFLOAD_SHM_THRESHOLD", str(1 << 20)))

#: Segments of arguments kept, mapped, for the next arguments once their
#: item is over: at most this many, of at most this many bytes in all.
#: Making a segment is cheap, but its first write costs a page fault per
#: 4 KiB page (about 70 ms per 100 MB on a virtual machine, seven times
#: the copy itself), on the thread that submits; a reused one costs the
#: copy alone.
CACHE_COUNT = 4
CACHE_BYTES = 512 << 20

#: Last byte of data that has a trailer of segments.
_MARK = b"S"[0]

#: Bytes of the trailer's length field.
_LENGTH = 4

#: Where Linux shows the segments, to find a dead worker's.
_SHM_DIR = "/dev/shm"

_counter = itertools.count()

#: (pid, prefix) of this process; a forked child makes its own.
_prefix: tuple[int, str] = (-1, "")

#: Segments of arguments that their items are over with, mapped.
_cache: list[shared_memory.SharedMemory] = []
#: Names that a worker still maps after its item (the task kept an
#: argument): never reused, unlinked when their item is dropped.
_kept: set[str] = set()
#: Names this process mapped from another (a worker's arguments).
_mapped: set[str] = set()
_lock = threading.Lock()


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


class Outgoing:
    """The ``buffer_callback`` of one pickle: puts large buffers in segments.

    Runs on the thread that pickles (the submitting thread for arguments,
    a worker's flushing thread for messages).  Truthy once it made a
    segment.  Its segments are unlinked by :meth:`discard`, or when it is
    garbage collected (the pool drops a work item with its ``Outgoing``
    once the item is over).
    """

    __slots__ = ("names", "sizes", "_segments", "_finalizer", "_reuse", "__weakref__")

    def __init__(self, reuse: bool = False) -> None:
        #: Keep the segments mapped and give them to the cache when done
        #: with (the application's arguments), rather than unmap them as
        #: soon as they are written (a worker's results, for the
        #: application to unlink).
        self._reuse = reuse
        self.names: list[str] = []
        self.sizes: list[int] = []
        #: The segments, closed (unmapped) but not yet unlinked.
        self._segments: list[shared_memory.SharedMemory] = []
        self._finalizer: weakref.finalize | None = None

    def __bool__(self) -> bool:
        return bool(self.names)

    def __call__(self, buffer: pickle.PickleBuffer) -> bool:
        """Copy ``buffer`` into a new segment if large; False if it did
        (out of band), True if the pickle should carry it."""
        try:
            view = buffer.raw()
        except BufferError:
            return True  # not contiguous: pickle copies it in band
        size = view.nbytes
        if size < THRESHOLD:
            return True
        reuse = self._reuse
        segment = (_from_cache(size) if reuse else None) or _create(size)
        self._segments.append(segment)
        if self._finalizer is None:
            done = _recycle if reuse else _unlink_all
            self._finalizer = weakref.finalize(self, done, self._segments)
        buffer = segment.buf
        assert buffer is not None  # None only once closed
        buffer[:size] = view
        if not reuse:
            segment.close()  # the copy is made: no need to keep it mapped
        self.names.append(segment.name)
        self.sizes.append(size)
        return False

    def trailer(self) -> bytes:
        """What goes after the pickle to name the segments."""
        listing = pickle.dumps((self.names, self.sizes), pickle.HIGHEST_PROTOCOL)
        return listing + len(listing).to_bytes(_LENGTH, "little") + bytes([_MARK])

    def discard(self) -> None:
        """Unlink the segments made so far (the pickle is not sent)."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self.names = []
        self.sizes = []
        self._segments = []

    def keep(self) -> None:
        """Hand the segments over to the receiver: it unlinks them."""
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._segments = []


def mark_kept(names: list[str]) -> None:
    """A worker still maps ``names`` after its item: do not reuse them."""
    with _lock:
        _kept.update(names)


def still_mapped(listing: tuple[list[str], list[int]] | None) -> list[str]:
    """The segments of ``listing`` this process still maps (worker side:
    the task kept a reference to an argument)."""
    if listing is None:
        return []
    with _lock:
        return [name for name in listing[0] if name in _mapped]


def drop_cache() -> None:
    """Unlink the cached segments (a pool shuts down)."""
    with _lock:
        segments, _cache[:] = list(_cache), []
    _unlink_all(segments)


def split(data: Any) -> tuple[Any, tuple[list[str], list[int]] | None]:
    """``(pickle, (names, sizes))`` of data with a trailer, ``(data, None)``
    of data without one."""
    if not data or data[-1] != _MARK:
        return data, None
    view = memoryview(data)
    end = len(view) - 1 - _LENGTH
    length = int.from_bytes(view[end:-1], "little")
    start = end - length
    return view[:start], pickle.loads(view[start:end])


def attach(
    listing: tuple[list[str], list[int]], *, unlink: bool
) -> list[pickle.PickleBuffer]:
    """Map the segments of ``listing``: one buffer each for ``pickle.loads``.

    A segment stays mapped while its buffer (or what unpickling built on
    it, an array) is alive.  With ``unlink``, each name is removed once
    mapped (even if mapping another fails), so the memory goes with the
    last mapping.  Raises OSError if a segment is gone.
    """
    names, sizes = listing
    buffers: list[pickle.PickleBuffer] = []
    error: OSError | None = None
    for name, size in zip(names, sizes, strict=True):
        try:
            buffers.append(_map(name, size, unlink))
        except OSError as failure:
            error = failure
    if error is not None:
        raise error
    return buffers


def unlink_made_by(pid: int) -> None:
    """Unlink the payload segments that process ``pid`` made and nobody took
    (a worker that died with results in flight).  Linux lists segments in
    ``/dev/shm``; elsewhere this does nothing."""
    try:
        entries = os.listdir(_SHM_DIR)
    except OSError:
        return
    stem = _pid_stem(pid)
    for entry in entries:
        head, _, tail = entry.partition("_p")
        if tail and head[:-6] == stem and head.startswith("ofl"):
            _unlink(entry)


# Private ---------------------------------------------------------------------


def _create(size: int) -> shared_memory.SharedMemory:
    while True:
        try:
            return shared_memory.SharedMemory(name=_new_name(), create=True, size=size)
        except FileExistsError:
            continue  # a dead process of the same pid left one: next name


def _map(name: str, size: int, unlink: bool) -> pickle.PickleBuffer:
    if unlink:
        # Attaching registers the name with the resource tracker (a no-op:
        # its maker registered it in the same tracker); unlink() removes it.
        segment = shared_memory.SharedMemory(name=name)
        segment.unlink()
    else:
        segment = _attach_untracked(name)
        with _lock:
            _mapped.add(name)
    buffer = segment.buf
    assert buffer is not None  # None only once closed
    view = buffer[:size]
    # Unmap once the last user of the view is gone (close() before then
    # would fail: the view is exported).  Wrapped: NumPy makes its own
    # memoryview of what it is given, which would keep the mapping but not
    # ``view``; of a PickleBuffer, that memoryview keeps the PickleBuffer,
    # hence ``view``, alive.
    # Not at exit: arrays still alive then keep their views exported.
    weakref.finalize(view, _close, segment, name).atexit = False
    return pickle.PickleBuffer(view)


def _close(segment: shared_memory.SharedMemory, name: str) -> None:
    segment.close()
    with _lock:
        _mapped.discard(name)


def _from_cache(size: int) -> shared_memory.SharedMemory | None:
    """The smallest cached segment that fits ``size`` bytes without wasting
    more than half of it, taken out of the cache; None if there is none."""
    with _lock:
        fits = [s for s in _cache if size <= s.size <= 2 * size]
        if not fits:
            return None
        segment = min(fits, key=lambda s: s.size)
        _cache.remove(segment)
        return segment


def _recycle(segments: list[shared_memory.SharedMemory]) -> None:
    """Their item is over: cache the segments that no worker still maps."""
    unlink = []
    with _lock:
        for segment in segments:
            name = segment.name
            if name in _kept:
                _kept.discard(name)
                unlink.append(segment)
                continue
            _cache.append(segment)
        # Over the limits: the oldest go.
        while _cache and (
            len(_cache) > CACHE_COUNT or sum(s.size for s in _cache) > CACHE_BYTES
        ):
            unlink.append(_cache.pop(0))
    _unlink_all(unlink)


def _attach_untracked(name: str) -> shared_memory.SharedMemory:
    try:
        # Python 3.13+: the maker alone tracks the segment.
        return shared_memory.SharedMemory(name=name, track=False)  # type: ignore[call-arg]
    except TypeError:
        # Before 3.13 attaching registers it too; workers share the
        # application's tracker, where a second registration is a no-op.
        return shared_memory.SharedMemory(name=name)


def _unlink(name: str) -> None:
    try:
        segment = shared_memory.SharedMemory(name=name)
    except OSError:
        return  # gone already
    try:
        segment.unlink()
    except OSError:
        pass
    segment.close()


def _unlink_all(segments: list[shared_memory.SharedMemory]) -> None:
    for segment in segments:
        try:
            segment.unlink()
        except OSError:
            pass  # gone already
        segment.close()
