"""The application's shared-memory segments kept for reuse.

The first write to a new segment costs a page fault per 4 KiB page (about
70 ms per 100 MB on a virtual machine, seven times the copy itself), on
the thread that submits.  So the application keeps the segments of
arguments whose items are over, mapped, for the next ones; a reused
segment costs the copy alone.  See ``offload._backends.process.shm`` for
how segments travel; this module only keeps them.

* A task may keep a reference to an argument past its end: the worker
  names it in a KEPT record before its DONE (:func:`mark_kept`), and that
  segment is unlinked when its item is dropped, never reused.
* An item lends its worker segments for its results (:func:`lend`): cached
  ones, else new ones (no memory until written).  A result written in one
  comes back to the application, which reads it through its own mapping
  (:func:`returned`) and caches the segment once the result is dropped.
  The unused ones come back when the item is dropped (:func:`give_back`).
  A worker keeps its mappings of the segments it saw, for when the
  application names them again (``worker_segments``).
* At most ``CACHE_COUNT`` segments and ``CACHE_BYTES`` bytes are kept, for
  at most ``CACHE_SECONDS`` unused, and only while a pool runs.
* A segment the application made was written through its file, not its
  mapping here (``shm._write_new``): the first write through that mapping
  would fault every page in (about 40 ms per 100 MB on the thread that
  submits).  So a segment comes into the cache only once a thread of its
  own has faulted that mapping in (:func:`give_back`, ``_warm``).
* When a request misses while a segment of its size is out already (three
  large arguments submitted in a row, say), that thread also makes one
  more segment of that size for the cache (a spare), so that the next
  request finds one ready: see :func:`take`.

Every function may be called from any thread of the application.
"""

from __future__ import annotations

import atexit
import mmap
import os
import threading
import time
import weakref
from collections.abc import Callable, Collection
from multiprocessing import shared_memory

from offload._backends.process import aside, tracker
from offload._backends.process.unmapping import close

#: Most segments kept, most bytes kept in all, longest time (s) unused.
CACHE_COUNT = 8
CACHE_BYTES = 1 << 30
CACHE_SECONDS = 30.0

#: Segments whose items are over, mapped, oldest first.
_cache: list[shared_memory.SharedMemory] = []
#: When (monotonic) each cached segment was given back, by name.
_cached_at: dict[str, float] = {}
#: Unlinks the segments unused for CACHE_SECONDS; None when none is cached.
_trimmer: threading.Timer | None = None
#: Names that a worker still maps after its item: never reused.
_kept: set[str] = set()
#: Cached segments lent to a worker for its item's results, by name.
_lent: dict[str, shared_memory.SharedMemory] = {}
#: Pools running in this process; segments are kept only while one runs.
_users = 0
#: The segments for reuse this process made and has not unlinked.
_reusable: weakref.WeakSet[shared_memory.SharedMemory] = weakref.WeakSet()
#: Names of those whose mapping here no write has touched yet.
_cold: set[str] = set()
#: Names of the segments made to be lent that no worker wrote yet (see
#: ``lend``).
_unwritten: set[str] = set()
#: Sizes of the spares being made (see ``take``).
_spares: list[int] = []
#: Reentrant: a garbage collection inside a locked section may run a
#: finalizer that gives segments back.
_lock = threading.RLock()
#: Cold segments queued for warming or being warmed, by name: a request
#: that finds none in the cache takes one of these (see ``_warm``).
_warming: dict[str, shared_memory.SharedMemory] = {}
#: Name of the segment the aside thread reads into now, if any; and the
#: condition notified when it stops.
_reading: str | None = None
_read_done = threading.Condition(_lock)


def _forget_in_child() -> None:
    # A forked child (a worker of the "fork" start method, or a task's
    # child) has copies of the parent's segments and of the lock, perhaps
    # held by another thread at the fork: it starts afresh, and never
    # unlinks the parent's segments.  It unmaps those nothing uses (cached,
    # warming, lent): each would keep its memory, after the parent unlinks
    # it, for as long as the child lives.
    global _lock, _trimmer, _users, _reusable, _reading, _read_done
    idle = _cache + list(_warming.values()) + list(_lent.values())
    _lock = threading.RLock()
    _read_done = threading.Condition(_lock)
    _reading = None
    _warming.clear()
    _trimmer = None
    _users = 0
    _spares.clear()
    _cache.clear()
    _cached_at.clear()
    _kept.clear()
    _lent.clear()
    _cold.clear()
    _unwritten.clear()
    _reusable = weakref.WeakSet()
    for segment in idle:
        try:
            segment.close()
        except (BufferError, OSError):
            pass  # left mapped: no worse than before


os.register_at_fork(after_in_child=_forget_in_child)


@atexit.register
def _unlink_at_exit() -> None:
    # Results still held at exit may live in segments lent to workers:
    # unlink them (they stay mapped until the process ends), rather than
    # leave them to the resource tracker, which warns of leaked objects.
    # Registered before the process pool's exit handler (the pool imports
    # this module), so it runs after that one has stopped the workers.
    for segment in list(_reusable):
        try:
            with tracker.guard:
                segment.unlink()
        except OSError:
            pass  # unlinked already


def fits_in(capacity: int, size: int) -> bool:
    """Whether ``size`` bytes may go in a segment of ``capacity`` bytes: it
    fits, wasting at most half of it."""
    return size <= capacity <= 2 * size


def open_cache() -> None:
    """A pool starts: keep segments for reuse while it runs."""
    global _users
    with _lock:
        _users += 1


def drop_cache() -> None:
    """A pool has ended: once none runs, unlink the cached segments (and
    those that come back later, from results still held), and wait for
    the segments being warmed or made as spares to go too."""
    global _users
    with _lock:
        _users = max(0, _users - 1)
        if _users:
            return
        segments, _cache[:] = list(_cache), []
        _cached_at.clear()
        trimmer = _stop_trimmer()
    if trimmer is not None:
        trimmer.join()
    unlink_all(segments)
    aside.join(ASIDE_JOIN_SECONDS)


def made(segment: shared_memory.SharedMemory) -> None:
    """``segment`` was made for reuse, and written through its file: unlink
    it at exit if still there, and warm it before it is cached."""
    _reusable.add(segment)
    with _lock:
        _cold.add(segment.name)


def take(
    size: int,
    make: Callable[[int], shared_memory.SharedMemory] | None = None,
    mine: Collection[shared_memory.SharedMemory] = (),
) -> shared_memory.SharedMemory | None:
    """The smallest cached segment that fits ``size`` bytes without wasting
    more than half of it, taken out of the cache; else one being warmed
    (cold: write it through its file, see :func:`is_cold`); None if there
    is none.

    On a miss, with ``make`` (which makes a segment for reuse of the size
    it is given), have a spare of ``size`` bytes made and cached off this
    thread, if a segment of that size is out already, other than ``mine``
    (the asking item's: in use by another item, or being warmed), and the
    spares being made and the cache stay within ``CACHE_COUNT`` and
    ``CACHE_BYTES`` (and this one within ``SPARE_BYTES``).  One large submit
    alone has no spare made (a spare is memory held for 30 s); each miss of
    a burst has one made for the next submit.
    """
    with _lock:
        fits = [s for s in _cache if fits_in(s.size, size)]
        if fits:
            segment = min(fits, key=lambda s: s.size)
            _cache.remove(segment)
            _cached_at.pop(segment.name, None)
            return segment
        fits = [s for s in _warming.values() if fits_in(s.size, size)]
        if fits:
            # Rather one the aside thread is not reading into: no wait.
            segment = min(fits, key=lambda s: (s.name == _reading, s.size))
            del _warming[segment.name]  # the aside thread stops warming it
            while _reading == segment.name:
                _read_done.wait()
            return segment
        if (
            make is None
            or not _users
            or size > SPARE_BYTES
            or len(_cache) + len(_spares) >= CACHE_COUNT
            or sum(s.size for s in _cache) + sum(_spares) + size > CACHE_BYTES
            or not any(fits_in(s.size, size) and s not in mine for s in _reusable)
        ):
            return None
        _spares.append(size)
    aside.run(_make_spare, (make, size))
    return None


def is_cold(segment: shared_memory.SharedMemory) -> bool:
    """Whether no write through this process's mapping of ``segment`` has
    faulted it in yet: then write it through its file (``shm._write_new``)."""
    return segment.name in _cold


def lend(size: int, make: Callable[[int], shared_memory.SharedMemory] | None = None) -> str | None:
    """Lend a worker a segment of ``size`` bytes for a result; its name.

    Rather one queued for warming (the worker writes through its own
    mapping; the warm ones stay for submits, which write through this
    process's); else a cached one; else, with ``make`` and while a pool
    runs, a new one: no memory until written, and unlinked, not cached, if
    it comes back unused (:func:`give_back`).
    """
    with _lock:
        queued = [
            s for s in _warming.values() if fits_in(s.size, size) and s.name != _reading
        ]
        segment = min(queued, key=lambda s: s.size) if queued else None
        if segment is not None:
            del _warming[segment.name]  # the aside thread passes it by
    if segment is None:
        segment = take(size)
    if segment is None:
        if make is None or not _users:
            return None
        segment = make(size)
        with _lock:
            _unwritten.add(segment.name)
    with _lock:
        _lent[segment.name] = segment
    return segment.name


def returned(name: str) -> shared_memory.SharedMemory:
    """The lent segment ``name``, which a worker wrote a result into: no
    longer lent (give it back once the result is dropped)."""
    with _lock:
        segment = _lent.pop(name, None)
        _unwritten.discard(name)
    if segment is None:
        raise FileNotFoundError(f"no shared-memory segment {name!r} was lent")
    return segment


def mark_kept(names: list[str]) -> None:
    """A worker still maps ``names`` after its item: do not reuse them."""
    with _lock:
        _kept.update(names)


def give_back(segments: list[shared_memory.SharedMemory], loans: list[str]) -> None:
    """Their item is over: cache the segments that no worker still maps,
    and the ones lent to it (``loans``, names) that it did not use; a cold
    one once it is warm (see ``_warm``)."""
    unlink, cold = [], []
    with _lock:
        unused = [_lent.pop(name, None) for name in loans]
        segments = segments + [s for s in unused if s is not None]
        for segment in segments:
            name = segment.name
            if name in _unwritten or name in _kept or not _users:
                # A loan never written has no memory to reuse.
                _unwritten.discard(name)
                _kept.discard(name)
                unlink.append(segment)
            elif name in _cold:
                _warming[name] = segment
                cold.append(segment)
            else:
                unlink += _cache_locked(segment)
    unlink_all(unlink)
    for segment in cold:
        aside.run(_warm, segment)


def unlink_all(segments: list[shared_memory.SharedMemory]) -> None:
    """Unlink and unmap ``segments``."""
    for segment in segments:
        _reusable.discard(segment)
        _cold.discard(segment.name)
        _unwritten.discard(segment.name)
        try:
            with tracker.guard:
                segment.unlink()
        except OSError:
            pass  # gone already
        close(segment)


#: Largest spare made (see ``take``): a quarter of what the cache keeps.
SPARE_BYTES = CACHE_BYTES // 4

#: Bytes ``_warm`` faults in at a time (a request that takes the segment
#: waits for at most one such piece: under a millisecond, more if the aside
#: thread, at its lower priority, is kept from the CPU).
WARM_CHUNK = 4 << 20

#: Longest wait (s) of ``drop_cache`` for the aside thread's last jobs.
ASIDE_JOIN_SECONDS = 10.0


def _warm(segment: shared_memory.SharedMemory, new: bool = False) -> None:
    """Fault this process's mapping of the cold ``segment`` in, then cache
    it (aside thread), unless a request took it meanwhile (see ``take``).

    Reading a byte of each page faults it in, writable (a shared mapping):
    10 ms per 100 MB, and a later write then takes 9 ms instead of 40.  In
    ``WARM_CHUNK`` pieces, one C call each (half a millisecond of GIL).  A
    ``new`` segment (a spare) has no pages yet, and giving them takes 80
    ms per 100 MB: its file is read into it instead, GIL released (Linux).
    It stops once the segment is taken; the taker waits for the piece
    being read (if it could take no other), then has it alone.
    """
    global _reading
    name = segment.name
    memory = segment.buf
    assert memory is not None  # not closed: nobody else has it
    fd = -1
    if new:
        try:
            fd = open_file(segment, os.O_RDONLY)
        except OSError:
            pass  # no file: touched instead
    cold = False
    try:
        for start in range(0, len(memory), WARM_CHUNK):
            with _lock:
                if name not in _warming:
                    return  # taken
                _reading = name
            try:
                _fault_in(memory[start : start + WARM_CHUNK], fd, start)
            finally:
                with _lock:
                    _reading = None
                    _read_done.notify_all()
    except OSError:
        cold = True  # cached cold: a submit writes it through its file
    finally:
        if fd >= 0:
            os.close(fd)
    with _lock:
        if _warming.pop(name, None) is None:
            return  # taken
        if not cold:
            _cold.discard(name)
        unlink = _cache_locked(segment) if _users else [segment]
    unlink_all(unlink)


def _fault_in(memory: memoryview, fd: int, offset: int) -> None:
    """Fault ``memory``'s pages in: read the segment's file (``fd``, from
    ``offset``) into it, or without one (-1), read a byte of each page."""
    if fd >= 0:
        os.preadv(fd, [memory], offset)
    else:
        bytes(memory[:: mmap.PAGESIZE])


def _make_spare(job: tuple[Callable[[int], shared_memory.SharedMemory], int]) -> None:
    """Make a segment of ``size`` bytes with ``make`` and warm it into the
    cache (aside thread; see ``take``)."""
    make, size = job
    try:
        if _users:
            segment = make(size)
            with _lock:
                _warming[segment.name] = segment
            _warm(segment, new=True)
    except OSError:
        pass  # no memory for a spare: none is made
    finally:
        with _lock:
            _spares.remove(size)


#: Where Linux shows the segments as files.
SHM_DIR = "/dev/shm"


def open_file(segment: shared_memory.SharedMemory, flags: int) -> int:
    """A descriptor of ``segment``'s file in :data:`SHM_DIR` (``os.open``
    ``flags``); OSError where there is none (not Linux)."""
    return os.open(os.path.join(SHM_DIR, segment.name.lstrip("/")), flags)


# Private ---------------------------------------------------------------------


def _cache_locked(segment: shared_memory.SharedMemory) -> list[shared_memory.SharedMemory]:
    """Cache ``segment``; the oldest go if over the limits: those to
    unlink.  Lock held."""
    _cache.append(segment)
    _cached_at[segment.name] = time.monotonic()
    unlink = []
    while _cache and (
        len(_cache) > CACHE_COUNT or sum(s.size for s in _cache) > CACHE_BYTES
    ):
        old = _cache.pop(0)
        _cached_at.pop(old.name, None)
        unlink.append(old)
    _start_trimmer()
    return unlink


def _start_trimmer() -> None:
    """Have the idle segments unlinked in CACHE_SECONDS.  Lock held."""
    global _trimmer
    if _trimmer is None and _cache:
        _trimmer = threading.Timer(CACHE_SECONDS, _trim)
        _trimmer.name = "offload-shm-trim"
        _trimmer.daemon = True
        _trimmer.start()


def _stop_trimmer() -> threading.Timer | None:
    """Cancel the trimmer; return it, to be joined without the lock."""
    global _trimmer
    trimmer, _trimmer = _trimmer, None
    if trimmer is not None:
        trimmer.cancel()
    return trimmer


def _trim() -> None:
    """Unlink the cached segments unused for CACHE_SECONDS (timer thread)."""
    global _trimmer
    old = time.monotonic() - CACHE_SECONDS
    with _lock:
        if _trimmer is not threading.current_thread():
            return  # cancelled, or replaced
        _trimmer = None
        idle = [s for s in _cache if _cached_at.get(s.name, 0.0) <= old]
        for segment in idle:
            _cache.remove(segment)
            _cached_at.pop(segment.name, None)
        _start_trimmer()
    unlink_all(idle)
