"""The first write to a new shared-memory segment (``shm._write_new``).

It goes through the segment's file in ``/dev/shm`` where Linux shows it
(one pass in the kernel instead of a page fault per page of the mapping),
else through the mapping; both must leave exactly the bytes given.
"""

from __future__ import annotations

import os

import pytest

from offload._backends.process import segment_cache, shm


@pytest.fixture
def segment():
    made = []

    def make(size):
        segment = shm._create(size)
        made.append(segment)
        return segment

    yield make
    for segment in made:
        segment.close()
        segment.unlink()


# Sizes around the 4 KiB page and over a megabyte, uneven on purpose.
SIZES = [1, 4095, 4097, (1 << 20) + 13]


@pytest.mark.parametrize("size", SIZES)
def test_a_new_segment_gets_exactly_the_bytes(segment, size):
    data = os.urandom(size)
    target = segment(size)
    shm._write_new(target, memoryview(data))
    assert bytes(target.buf[:size]) == data


@pytest.mark.skipif(not os.path.isdir(segment_cache.SHM_DIR), reason="no /dev/shm here")
def test_the_write_goes_through_the_segments_file(segment, monkeypatch):
    # pwrite on the file, not the mapping: proven by the call itself.
    written = []
    real_pwrite = os.pwrite

    def pwrite(fd, data, offset):
        written.append((offset, len(data)))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    data = os.urandom(70_000)
    target = segment(len(data))
    shm._write_new(target, memoryview(data))
    assert written and written[0] == (0, len(data))
    assert bytes(target.buf[: len(data)]) == data


def test_without_the_segments_file_it_writes_through_the_mapping(segment, monkeypatch, tmp_path):
    monkeypatch.setattr(segment_cache, "SHM_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setattr(os, "pwrite", None)  # must not be called
    data = os.urandom(10_000)
    target = segment(len(data))
    shm._write_new(target, memoryview(data))
    assert bytes(target.buf[: len(data)]) == data


def test_a_short_pwrite_is_continued(segment, monkeypatch):
    # pwrite may write less than asked (a signal, a huge request).
    if not os.path.isdir(segment_cache.SHM_DIR):
        pytest.skip("no /dev/shm here")
    real_pwrite = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: real_pwrite(fd, data[:1000], offset))
    data = os.urandom(5_500)
    target = segment(len(data))
    shm._write_new(target, memoryview(data))
    assert bytes(target.buf[: len(data)]) == data
