"""Large shared-memory segments are unmapped off the calling thread: freeing
a 100 MB mapping's pages takes ~15 ms, which on the GUI thread (where a
received result's finalizer runs) is a visible stall."""

from __future__ import annotations

import threading
import time
from multiprocessing import shared_memory

import pytest

from offload._backends.process import unmapping

pytestmark = pytest.mark.process


class RecordingSegment(shared_memory.SharedMemory):
    """A segment that notes the thread that closed it."""

    closed_on: int | None = None

    def close(self) -> None:
        self.closed_on = threading.get_ident()
        super().close()


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(delay)  # polling a condition, with a deadline
        delay = min(2 * delay, 0.05)


def made(size: int) -> RecordingSegment:
    segment = RecordingSegment(create=True, size=size)
    segment.buf[::4096] = b"\1" * len(range(0, size, 4096))  # its pages exist
    segment.unlink()
    return segment


def test_a_large_segment_is_unmapped_by_another_thread():
    segment = made(unmapping.CLOSE_ASIDE)
    unmapping.close(segment)
    wait_for(lambda: segment.closed_on is not None)
    assert segment.closed_on != threading.get_ident()
    assert segment.buf is None
    # The aside thread ends once it has nothing to do.
    wait_for(lambda: not any(t.name == "offload-shm-aside" for t in threading.enumerate()))


def test_a_small_segment_is_unmapped_at_once():
    segment = made(64 * 1024)
    unmapping.close(segment)
    assert segment.closed_on == threading.get_ident()
    assert segment.buf is None


def test_many_closes_from_several_threads_all_happen():
    segments = [made(unmapping.CLOSE_ASIDE) for _ in range(6)]
    threads = [
        threading.Thread(target=unmapping.close, args=(segment,)) for segment in segments
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    wait_for(lambda: all(segment.buf is None for segment in segments))
