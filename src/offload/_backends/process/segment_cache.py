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
* An item lends its worker cached segments for its results (:func:`lend`);
  a result written in one comes back to the application, which reads it
  through its own mapping (:func:`returned`) and caches the segment again
  once the result is dropped.  The unused ones come back when the item is
  dropped (:func:`give_back`).
* At most ``CACHE_COUNT`` segments and ``CACHE_BYTES`` bytes are kept, for
  at most ``CACHE_SECONDS`` unused, and only while a pool runs.

Every function may be called from any thread of the application.
"""

from __future__ import annotations

import atexit
import gc
import os
import queue
import threading
import time
import weakref
from multiprocessing import shared_memory

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
_lock = threading.Lock()


def _forget_in_child() -> None:
    # A forked child (a worker of the "fork" start method, or a task's
    # child) has copies of the parent's segments and of the lock, perhaps
    # held by another thread at the fork: it starts afresh, and never
    # unlinks the parent's segments.
    global _lock, _trimmer, _users, _reusable
    _lock = threading.Lock()
    _trimmer = None
    _users = 0
    _cache.clear()
    _cached_at.clear()
    _kept.clear()
    _lent.clear()
    _reusable = weakref.WeakSet()


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
            segment.unlink()
        except OSError:
            pass  # unlinked already


def open_cache() -> None:
    """A pool starts: keep segments for reuse while it runs."""
    global _users
    with _lock:
        _users += 1


def drop_cache() -> None:
    """A pool has ended: once none runs, unlink the cached segments (and
    those that come back later, from results still held)."""
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


def made(segment: shared_memory.SharedMemory) -> None:
    """``segment`` was made for reuse: unlink it at exit if still there."""
    _reusable.add(segment)


def take(size: int) -> shared_memory.SharedMemory | None:
    """The smallest cached segment that fits ``size`` bytes without wasting
    more than half of it, taken out of the cache; None if there is none."""
    with _lock:
        fits = [s for s in _cache if size <= s.size <= 2 * size]
        if not fits:
            return None
        segment = min(fits, key=lambda s: s.size)
        _cache.remove(segment)
        _cached_at.pop(segment.name, None)
        return segment


def lend(size: int) -> str | None:
    """Lend a cached segment of ``size`` bytes to a worker; its name, or
    None if the cache has none."""
    segment = take(size)
    if segment is None:
        return None
    with _lock:
        _lent[segment.name] = segment
    return segment.name


def returned(name: str) -> shared_memory.SharedMemory:
    """The lent segment ``name``, which a worker wrote a result into: no
    longer lent (give it back once the result is dropped)."""
    with _lock:
        segment = _lent.pop(name, None)
    if segment is None:
        raise FileNotFoundError(f"no shared-memory segment {name!r} was lent")
    return segment


def mark_kept(names: list[str]) -> None:
    """A worker still maps ``names`` after its item: do not reuse them."""
    with _lock:
        _kept.update(names)


def give_back(segments: list[shared_memory.SharedMemory], loans: list[str]) -> None:
    """Their item is over: cache the segments that no worker still maps,
    and the ones lent to it (``loans``, names) that it did not use."""
    unlink = []
    with _lock:
        unused = [_lent.pop(name, None) for name in loans]
        segments = segments + [s for s in unused if s is not None]
        for segment in segments:
            name = segment.name
            if name in _kept:
                _kept.discard(name)
                unlink.append(segment)
            elif _users:
                _cache.append(segment)
                _cached_at[name] = time.monotonic()
            else:
                unlink.append(segment)
        # Over the limits: the oldest go.
        while _cache and (
            len(_cache) > CACHE_COUNT or sum(s.size for s in _cache) > CACHE_BYTES
        ):
            old = _cache.pop(0)
            _cached_at.pop(old.name, None)
            unlink.append(old)
        _start_trimmer()
    unlink_all(unlink)


def unlink_all(segments: list[shared_memory.SharedMemory]) -> None:
    """Unlink and unmap ``segments``."""
    for segment in segments:
        _reusable.discard(segment)
        try:
            segment.unlink()
        except OSError:
            pass  # gone already
        close(segment)


def close(segment: shared_memory.SharedMemory) -> None:
    """Unmap ``segment``: a large one on a thread of its own (see
    :data:`CLOSE_ASIDE`), a small one now; either after the garbage
    collection that runs this if views on it still export (see below)."""
    if segment.size >= CLOSE_ASIDE and threading.current_thread() is not _closer:
        _close_aside(segment)
    else:
        _close_now(segment)


#: Segments of at least this many bytes are unmapped by a thread of their
#: own.  Unmapping (and closing) the last reference to an unlinked segment
#: frees its pages: 15 ms per 100 MB, measured on the GUI thread, where the
#: garbage collection that finalizes a received result runs.
CLOSE_ASIDE = 8 * 1024 * 1024


def _close_aside(segment: shared_memory.SharedMemory) -> None:
    """Have the closer thread unmap ``segment``; start it if none runs.

    May run inside a garbage collection (a finalizer) on a thread that is
    already in here: hence a ``SimpleQueue`` (its ``put`` is reentrant) and
    a reentrant lock.
    """
    global _closer
    _to_close.put(segment)
    with _closer_lock:
        if _closer is None:
            _closer = threading.Thread(
                target=_close_queued, name="offload-shm-close", daemon=True
            )
            _closer.start()


def _close_queued() -> None:
    """The closer thread: unmap what is queued, then end (so that a process
    that is done with large segments keeps no thread for them)."""
    global _closer
    while True:
        try:
            segment = _to_close.get_nowait()
        except queue.Empty:
            with _closer_lock:
                if _to_close.empty():
                    _closer = None
                    return
            continue
        _close_now(segment)


def _close_now(segment: shared_memory.SharedMemory) -> None:
    """Unmap ``segment`` now, or after the garbage collection that runs
    this if views on it still export (see below)."""
    try:
        segment.close()
    except BufferError:
        # The views were in a garbage cycle (a memoryview result held by
        # a future, say): the collector runs weakref callbacks (what calls
        # this) before it tears the cycle down, so they still export.
        # Closed once that collection is over.  (No lock: a collection may
        # have interrupted a holder of one; list appends are atomic.)
        _unclosed.append(segment)
        if _after_collection not in gc.callbacks:
            gc.callbacks.append(_after_collection)


def _after_collection(phase: str, info: dict) -> None:
    if phase != "stop" or not _unclosed:
        return
    pending = list(_unclosed)
    del _unclosed[: len(pending)]
    for segment in pending:
        close(segment)


#: Segments whose views still exported when closed (see ``close``).
_unclosed: list[shared_memory.SharedMemory] = []

#: Large segments waiting for the closer thread, and that thread (None
#: when none runs); see ``_close_aside``.
_to_close: queue.SimpleQueue[shared_memory.SharedMemory] = queue.SimpleQueue()
_closer: threading.Thread | None = None
_closer_lock = threading.RLock()


# Private ---------------------------------------------------------------------


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
