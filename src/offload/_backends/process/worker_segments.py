"""A worker's side of the application's segments: its mappings, kept
between items, and the segments lent to it for its results.

The application reuses its segments (``segment_cache``): the segment of
one item's argument is often the argument, or the segment lent for the
results, of a later item.  A worker that mapped each afresh would pay a
page fault per 4 KiB page it touches, every item: on a 2-core virtual
machine, 13 ms to read 100 MB through a new mapping against 5 through a
mapped one, and 20 ms to write 100 MB into a lent segment (``pwrite`` to
its file, the fastest way into a new mapping) against 10.  So a worker:

* maps a segment with ``MAP_POPULATE`` (the kernel fills the page table
  in one pass: 7 ms per 100 MB), so that no access faults after;
* keeps its mapping once the item is done with it (at most
  ``KEEP_COUNT`` of them and ``KEEP_BYTES`` in all, the newest), and
  uses it again when the application names that segment again;
* drops the mapping of a segment the application has unlinked (which it
  does once it stops reusing it): the mapping would keep its memory.
  :func:`prune` looks, at each item and every half second from the
  worker's watchdog thread: at most a few ``fstat`` calls.

This needs Linux (``/dev/shm`` and ``MAP_POPULATE``); elsewhere
:data:`AVAILABLE` is False and the worker maps each segment afresh through
``multiprocessing.shared_memory``.  ``shm`` says how segments travel.
"""

from __future__ import annotations

import mmap
import os
import threading
from multiprocessing import shared_memory
from typing import Any

from offload._backends.process import tracker, unmapping
from offload._backends.process.segment_cache import CACHE_BYTES, CACHE_COUNT, SHM_DIR, fits_in

#: Most mappings kept, and most bytes: as many as the application's cache
#: keeps for reuse.
KEEP_COUNT = CACHE_COUNT
KEEP_BYTES = CACHE_BYTES

#: Whether this platform can (Linux).
AVAILABLE = hasattr(mmap, "MAP_POPULATE") and os.path.isdir(SHM_DIR)

#: Mappings kept, by segment name, oldest first.
_kept: dict[str, Mapping] = {}
#: Names of the argument segments whose views are alive now.
_mapped: set[str] = set()
#: The segments lent for the item running now.
_spares: list[Any] = []
_lock = threading.Lock()


def _forget_in_child() -> None:
    # A forked child (a task's own fork) has copies of the mappings: the
    # kept ones, which nothing of the child's uses, are unmapped there (they
    # would keep each segment's memory for as long as the child lives); the
    # others are its task's.  The lock may have been held at the fork.
    global _lock
    _lock = threading.Lock()
    kept = list(_kept.values())
    _kept.clear()
    _mapped.clear()
    _spares.clear()
    _close_all(kept)


os.register_at_fork(after_in_child=_forget_in_child)


class Mapping:
    """A worker's mapping of the segment ``name``, made on first use.

    Has what ``shm`` uses of a ``SharedMemory``: ``name``, ``size``,
    ``buf`` and ``close()``.  Opening it only opens the segment's file (a
    segment lent for results may never be written: mapping it with
    ``MAP_POPULATE`` would give it memory).  Raises OSError (as
    ``FileNotFoundError``) if the segment is gone.
    """

    __slots__ = ("name", "size", "_fd", "_map", "_buf")

    def __init__(self, name: str) -> None:
        self.name = name
        self._map: mmap.mmap | None = None
        self._buf: memoryview | None = None
        self._fd = -1
        fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR)
        try:
            self.size = os.fstat(fd).st_size
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    @property
    def buf(self) -> memoryview:
        """The segment's memory, mapped (and its page table filled) now if
        not yet."""
        if self._buf is None:
            self._map = mmap.mmap(
                self._fd,
                self.size,
                flags=mmap.MAP_SHARED | mmap.MAP_POPULATE,
                prot=mmap.PROT_READ | mmap.PROT_WRITE,
            )
            self._buf = memoryview(self._map)
        return self._buf

    @property
    def mapped(self) -> bool:
        """Whether :attr:`buf` was asked for (the memory is mapped)."""
        return self._buf is not None

    def unlinked(self) -> bool:
        """Whether the application removed the segment's name."""
        try:
            return os.fstat(self._fd).st_nlink == 0
        except OSError:
            return True

    def __del__(self) -> None:
        # One dropped without close() (a task's forked child clears the
        # lists that held it) must not leave its file open.
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at exit, os may be half gone
            pass

    def close(self) -> None:
        """Unmap and close the file; if views on the memory are still alive
        (a garbage cycle being torn down), it is unmapped when they go."""
        buf, self._buf = self._buf, None
        memory, self._map = self._map, None
        try:
            if buf is not None:
                buf.release()
                assert memory is not None
                memory.close()
        except BufferError:
            pass  # ``memory`` unmaps itself once the last view is gone
        finally:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def open_segment(name: str) -> Any:
    """A mapping of the segment ``name``: the kept one (taken out of the
    kept ones), or a new one; a ``SharedMemory`` where this platform cannot
    keep them.  Raises OSError if the segment is gone."""
    if not AVAILABLE:
        return attach_untracked(name)
    with _lock:
        mapping = _kept.pop(name, None)
    if mapping is not None and not mapping.unlinked():
        return mapping
    if mapping is not None:
        _close_all([mapping])
    return Mapping(name)


def done_with(segment: Any) -> None:
    """The worker no longer uses ``segment`` (from :func:`open_segment`):
    kept, or unmapped."""
    if isinstance(segment, Mapping):
        _keep(segment)
    else:
        unmapping.close(segment)


def mapping_argument(name: str, mapped: bool) -> None:
    """The argument segment ``name`` has live views (``mapped``), or no more."""
    with _lock:
        if mapped:
            _mapped.add(name)
        else:
            _mapped.discard(name)


def still_mapped(names: list[str]) -> list[str]:
    """Those of ``names`` that have live views (a task kept an argument)."""
    with _lock:
        return [name for name in names if name in _mapped]


def accept_loans(loans: list[str]) -> None:
    """The application lent the segments ``loans`` for this item's results."""
    opened = []
    for name in loans:
        try:
            opened.append(open_segment(name))
        except OSError:
            continue  # not there: results go to new segments
    with _lock:
        _spares.extend(opened)


def take_spare(size: int) -> Any:
    """A segment lent to this worker that fits ``size`` bytes, if any."""
    if not _spares:
        return None
    with _lock:
        for spare in _spares:
            if fits_in(spare.size, size):
                _spares.remove(spare)
                return spare
    return None


def return_loans() -> None:
    """Let go of the lent segments this worker did not use (before it says
    DONE: the application reuses them from then on)."""
    if not _spares:
        return  # the common case: nothing was lent
    with _lock:
        spares, _spares[:] = list(_spares), []
    for segment in spares:
        done_with(segment)


def attach_untracked(name: str) -> shared_memory.SharedMemory:
    """Map the segment ``name`` as a ``SharedMemory`` that does not unlink it."""
    try:
        # Python 3.13+: the maker alone tracks the segment.
        return shared_memory.SharedMemory(name=name, track=False)  # type: ignore[call-arg]
    except TypeError:
        # Before 3.13 attaching registers it too; workers share the
        # application's tracker, where a second registration is a no-op.
        with tracker.guard:
            return shared_memory.SharedMemory(name=name)


def _keep(mapping: Mapping) -> None:
    """The worker is done with ``mapping`` for now: keep it for the next
    item that names its segment, unless unmapped or unlinked; the oldest
    kept ones go past the limits."""
    if not mapping.mapped or mapping.unlinked():
        _close_all([mapping])
        return
    with _lock:
        _kept.pop(mapping.name, None)
        _kept[mapping.name] = mapping
        dropped = []
        while len(_kept) > KEEP_COUNT or sum(m.size for m in _kept.values()) > KEEP_BYTES:
            dropped.append(_kept.pop(next(iter(_kept))))
    _close_all(dropped)


def prune() -> None:
    """Unmap the kept mappings of segments the application has unlinked."""
    if not _kept:
        return
    with _lock:
        gone = [m for m in _kept.values() if m.unlinked()]
        for mapping in gone:
            del _kept[mapping.name]
    _close_all(gone)


def kept_bytes() -> int:
    """Bytes of the kept mappings (all resident: populated when made)."""
    with _lock:
        return sum(mapping.size for mapping in _kept.values())


def kept_names() -> list[str]:
    """Names of the segments whose mappings are kept (for tests)."""
    with _lock:
        return list(_kept)


def _close_all(mappings: list[Mapping]) -> None:
    for mapping in mappings:
        mapping.close()
