"""A worker keeps its mappings of the application's segments between items
(``offload._backends.process.worker_segments``).  What must hold: a kept
mapping is the one used the next time its segment is named, and it is
mapped in full (no page faults after); a segment lent but never written
gets no memory; the limits hold; and a mapping never outlives the
segment's name for long, since it would keep its memory."""

from __future__ import annotations

import os
from multiprocessing import shared_memory

import pytest

from offload._backends.process import segment_cache, worker_segments

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(not worker_segments.AVAILABLE, reason="Linux only (/dev/shm, MAP_POPULATE)"),
]

SIZE = 1 << 20


def mapped_here(name: str) -> bool:
    """Whether this process maps the segment ``name``, unlinked or not."""
    with open("/proc/self/maps") as maps:
        return any(line.split()[5:6] == [f"/dev/shm/{name}"] for line in maps)


def resident_kib(name: str) -> int:
    """KiB of the segment ``name`` mapped in by this process (Rss, summed
    over its mappings here)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if not fields[0].endswith(":"):  # a mapping's first line
                inside = fields[-1] == f"/dev/shm/{name}"
            elif inside and fields[0] == "Rss:":
                total += int(fields[1])
    return total


@pytest.fixture
def segments():
    """``make()``: a segment as the application makes one; all unlinked,
    and the kept mappings dropped, after the test."""
    made: list[shared_memory.SharedMemory] = []

    def make(size: int = SIZE) -> shared_memory.SharedMemory:
        segment = shared_memory.SharedMemory(create=True, size=size)
        made.append(segment)
        return segment

    yield make
    for segment in made:
        segment.close()
        try:
            segment.unlink()
        except FileNotFoundError:
            pass
    worker_segments.prune()
    assert worker_segments.kept_names() == []


def test_a_kept_mapping_is_used_again_and_sees_the_applications_writes(segments):
    segment = segments()
    mapping = worker_segments.open_segment(segment.name)
    mapping.buf[:3] = b"abc"
    assert bytes(segment.buf[:3]) == b"abc"
    worker_segments.done_with(mapping)
    assert worker_segments.kept_names() == [segment.name]
    segment.buf[:3] = b"xyz"
    again = worker_segments.open_segment(segment.name)
    assert again is mapping
    assert bytes(again.buf[:3]) == b"xyz"
    # Taken out of the kept ones while in use.
    assert worker_segments.kept_names() == []
    worker_segments.done_with(again)


def test_a_mapping_is_filled_in_when_made(segments):
    segment = segments(4 * SIZE)
    segment.buf[:] = b"\1" * (4 * SIZE)  # the pages exist
    segment.close()  # only the worker's mapping is left
    mapping = worker_segments.open_segment(segment.name)
    assert not mapped_here(segment.name)  # not until used
    mapping.buf  # noqa: B018 - maps it
    # Every page is in the mapping before any access (MAP_POPULATE).
    assert resident_kib(segment.name) == 4 * SIZE // 1024
    worker_segments.done_with(mapping)


def test_a_loan_never_written_is_given_no_memory_and_not_kept(segments):
    segment = segments(4 * SIZE)
    segment.close()  # the application's own mapping plays no part here
    worker_segments.accept_loans([segment.name])
    worker_segments.return_loans()
    assert worker_segments.kept_names() == []
    assert os.stat(os.path.join(segment_cache.SHM_DIR, segment.name)).st_blocks == 0


def test_a_written_loan_is_kept(segments):
    segment = segments()
    worker_segments.accept_loans([segment.name])
    spare = worker_segments.take_spare(SIZE // 2 + 1)
    assert spare is not None and spare.name == segment.name
    spare.buf[:4] = b"done"
    worker_segments.done_with(spare)
    worker_segments.return_loans()
    assert worker_segments.kept_names() == [segment.name]
    assert bytes(segment.buf[:4]) == b"done"


def test_a_loan_too_large_for_a_result_is_not_taken(segments):
    segment = segments(4 * SIZE)
    worker_segments.accept_loans([segment.name])
    assert worker_segments.take_spare(SIZE) is None  # would waste 3/4 of it
    worker_segments.return_loans()


def test_an_unlinked_segments_mapping_is_dropped(segments):
    segment = segments()
    mapping = worker_segments.open_segment(segment.name)
    mapping.buf  # noqa: B018 - maps it
    worker_segments.done_with(mapping)
    assert mapped_here(segment.name)
    segment.close()
    segment.unlink()
    worker_segments.prune()
    assert worker_segments.kept_names() == []
    assert not mapped_here(segment.name)


def test_a_segment_unlinked_while_in_use_is_not_kept(segments):
    segment = segments()
    segment.close()
    mapping = worker_segments.open_segment(segment.name)
    mapping.buf  # noqa: B018 - maps it
    segment.unlink()
    worker_segments.done_with(mapping)
    assert worker_segments.kept_names() == []
    assert not mapped_here(segment.name)


def test_the_oldest_mappings_go_past_the_limits(segments, monkeypatch):
    monkeypatch.setattr(worker_segments, "KEEP_COUNT", 2)
    names = []
    for _ in range(3):
        segment = segments()
        segment.close()  # only the worker's mapping is left
        mapping = worker_segments.open_segment(segment.name)
        mapping.buf  # noqa: B018 - maps it
        worker_segments.done_with(mapping)
        names.append(segment.name)
    assert worker_segments.kept_names() == names[1:]
    assert not mapped_here(names[0])
    monkeypatch.setattr(worker_segments, "KEEP_COUNT", 8)
    monkeypatch.setattr(worker_segments, "KEEP_BYTES", SIZE)
    segment = segments()
    mapping = worker_segments.open_segment(segment.name)
    mapping.buf  # noqa: B018 - maps it
    worker_segments.done_with(mapping)
    assert worker_segments.kept_names() == [segment.name]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_keeps_none_of_the_parents_mappings(segments):
    # Nothing of the child's uses them: unmapped there, they do not keep
    # the segment's memory for as long as the child lives.
    segment = segments()
    segment.close()  # only the worker's mapping is left
    mapping = worker_segments.open_segment(segment.name)
    mapping.buf[:2] = b"ok"
    worker_segments.done_with(mapping)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and leave at once
        report = b"%d %d" % (len(worker_segments.kept_names()), mapped_here(segment.name))
        os.write(write, report)
        os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 16) == b"0 0"
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert worker_segments.kept_names() == [segment.name]
    assert bytes(mapping.buf[:2]) == b"ok"  # the parent's mapping is intact


def test_a_mapping_dropped_without_close_closes_its_file(segments):
    segment = segments()
    segment.close()  # only the worker's mapping is left
    before = set(os.listdir("/proc/self/fd"))
    mapping = worker_segments.open_segment(segment.name)
    mapping.buf  # noqa: B018 - maps it
    assert set(os.listdir("/proc/self/fd")) > before
    del mapping
    assert set(os.listdir("/proc/self/fd")) == before
    assert not mapped_here(segment.name)
