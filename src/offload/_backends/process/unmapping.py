"""Unmapping the application's segments without stalling the thread asking.

Unmapping (and closing) the last reference to an unlinked segment frees its
pages: 15 ms per 100 MB, measured on the GUI thread, where the garbage
collection that finalizes a received result runs.  So :func:`close` hands
a large segment to the aside thread (``aside``), and closes a small one at
once.  Used by ``segment_cache`` and ``worker_segments``.
"""

from __future__ import annotations

import gc
from multiprocessing import shared_memory

from offload._backends.process import aside

#: Segments of at least this many bytes are unmapped by the aside thread.
CLOSE_ASIDE = 8 * 1024 * 1024

#: Segments whose views still exported when closed (see ``_close_now``).
_unclosed: list[shared_memory.SharedMemory] = []


def close(segment: shared_memory.SharedMemory) -> None:
    """Unmap ``segment``: a large one on the aside thread (see
    :data:`CLOSE_ASIDE`), a small one now; either after the garbage
    collection that runs this if views on it still export."""
    if segment.size >= CLOSE_ASIDE and not aside.on_it():
        aside.run(_close_now, segment)
    else:
        _close_now(segment)


def _close_now(segment: shared_memory.SharedMemory) -> None:
    """Unmap ``segment`` now, or after the garbage collection that runs
    this if views on it still export."""
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
