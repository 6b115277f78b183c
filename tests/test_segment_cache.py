"""The application's segment cache keeps large submits off the page-fault
path: a segment is warmed (its mapping here faulted in) on the aside
thread before it is reused, and a burst of large submits has a spare made
there for the next one.  What must hold: the bytes never change, the
thread that gives back or takes never does the faulting, nothing is made
for a lone submit, and nothing is left in ``/dev/shm`` once the cache is
dropped."""

from __future__ import annotations

import os
import sys
import threading
import time
from multiprocessing import shared_memory

import pytest

from offload._backends.process import aside, segment_cache, shm, unmapping
from payload_checks import wait_until

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(not os.path.isdir(segment_cache.SHM_DIR), reason="no /dev/shm here"),
]

SIZE = 4 << 20


def resident_kib(segment) -> int:
    """KiB of ``segment`` mapped in by this process (its mapping's Rss)."""
    name = "/dev/shm/" + segment.name.lstrip("/")
    with open("/proc/self/smaps") as smaps:
        lines = smaps.read().splitlines()
    for index, line in enumerate(lines):
        if line.endswith(name):
            for field in lines[index + 1 :]:
                if field.startswith("Rss:"):
                    return int(field.split()[1])
    raise AssertionError(f"{name} is not mapped here")


def reusable(size: int):
    """What a submit passes ``take`` to have a spare made."""
    return shm._create(size, reusable=True)


def aside_idle() -> bool:
    return not any(t.name == "offload-shm-aside" for t in threading.enumerate())


@pytest.fixture
def cache():
    """The cache open, as while a pool runs; dropped (and checked empty of
    this test's segments) after."""
    segment_cache.open_cache()
    made = []
    real_create = shm._create

    def create(size, reusable=False):
        segment = real_create(size, reusable)
        made.append(segment.name)
        return segment

    shm._create = create
    try:
        yield made
    finally:
        shm._create = real_create
        segment_cache.drop_cache()
    left = [name for name in made if os.path.exists(f"/dev/shm/{name.lstrip('/')}")]
    assert left == []


class HeldReads:
    """The warming's reads (``segment_cache._fault_in``) held at each call
    until ``release`` is set: ``reading`` is set once a read waits,
    ``calls`` counts them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reading, self.release = threading.Event(), threading.Event()
        self.calls = 0
        real_fault_in = segment_cache._fault_in

        def held_fault_in(*args):
            self.calls += 1
            self.reading.set()
            assert self.release.wait(10)
            return real_fault_in(*args)

        monkeypatch.setattr(segment_cache, "_fault_in", held_fault_in)


@pytest.fixture
def held_reads(monkeypatch):
    reads = HeldReads(monkeypatch)
    yield reads
    reads.release.set()  # whatever the test did


def submitted(data: bytes):
    """A reusable segment holding ``data``, written as a submit writes a new
    one (through its file: its mapping here is untouched)."""
    segment = shm._create(len(data), reusable=True)
    shm._write_new(segment, memoryview(data))
    return segment


def test_a_cold_segment_is_warmed_off_the_calling_thread_then_reused(cache, monkeypatch):
    data = os.urandom(SIZE)
    segment = submitted(data)
    assert resident_kib(segment) == 0
    readers = []
    real_fault_in = segment_cache._fault_in

    def fault_in(*args):
        readers.append(threading.get_ident())
        return real_fault_in(*args)

    monkeypatch.setattr(segment_cache, "_fault_in", fault_in)
    segment_cache.give_back([segment], [])
    assert wait_until(aside_idle)
    assert readers and threading.get_ident() not in readers
    assert resident_kib(segment) >= SIZE // 1024
    assert bytes(segment.buf[:SIZE]) == data  # warming changed nothing
    assert segment_cache.take(SIZE) is segment
    segment_cache.give_back([segment], [])


def test_a_segment_being_warmed_is_taken_once_the_chunk_being_read_is_done(
    cache, monkeypatch, held_reads
):
    # The next submit should not wait for the whole warm-up, nor make a new
    # segment: it takes this one, and the warming stops after its chunk.
    monkeypatch.setattr(segment_cache, "WARM_CHUNK", SIZE // 4)
    data = os.urandom(SIZE)
    segment = submitted(data)
    segment_cache.give_back([segment], [])
    assert held_reads.reading.wait(10)
    taken = []
    taker = threading.Thread(target=lambda: taken.append(segment_cache.take(SIZE)))
    taker.start()
    taker.join(0.2)
    assert taker.is_alive()  # waits for the chunk being read
    held_reads.release.set()
    taker.join(10)
    assert taken == [segment]
    assert wait_until(aside_idle)
    assert held_reads.calls == 1  # no chunk read after it was taken
    assert segment_cache.is_cold(segment)  # so a submit writes its file
    assert bytes(segment.buf[:SIZE]) == data
    segment_cache.give_back([segment], [])


def test_a_lone_miss_makes_no_spare(cache):
    assert segment_cache.take(SIZE, reusable) is None
    assert wait_until(aside_idle)
    assert cache == []


def test_a_miss_while_one_of_its_size_is_out_has_a_warm_spare_made(cache):
    first = submitted(os.urandom(SIZE))  # in use by a task
    # The second submit of the burst misses: a spare is made for the third.
    assert segment_cache.take(SIZE, reusable) is None
    assert wait_until(aside_idle)
    assert len(cache) == 2
    spare = segment_cache.take(SIZE)
    assert spare is not None and spare.name == cache[1]
    assert resident_kib(spare) >= SIZE // 1024  # warm: no fault on the write
    segment_cache.give_back([first, spare], [])


def test_no_spare_over_the_limit(cache, monkeypatch):
    monkeypatch.setattr(segment_cache, "SPARE_BYTES", SIZE - 1)
    first = submitted(os.urandom(SIZE))
    assert segment_cache.take(SIZE, reusable) is None
    assert wait_until(aside_idle)
    assert cache == [first.name]
    segment_cache.give_back([first], [])


def test_dropping_the_cache_while_a_spare_is_made_leaves_nothing(cache, held_reads):
    first = submitted(os.urandom(SIZE))
    assert segment_cache.take(SIZE, reusable) is None
    assert held_reads.reading.wait(10)
    segment_cache.give_back([first], [])  # cold: queued behind the spare
    threading.Timer(0.2, held_reads.release.set).start()
    segment_cache.drop_cache()  # waits for both
    segment_cache.open_cache()  # the fixture drops it again
    assert len(cache) == 2
    assert [n for n in cache if os.path.exists(f"/dev/shm/{n.lstrip('/')}")] == []


def test_a_failing_job_does_not_stop_the_aside_thread(caplog):
    def fail(argument):
        raise ValueError(argument)

    done = threading.Event()
    aside.run(fail, "boom")
    aside.run(lambda event: event.set(), done)
    assert done.wait(10)
    assert wait_until(aside_idle)
    assert "boom" in caplog.text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_runs_its_own_aside_thread():
    # The parent's aside thread is busy at the fork; the child has none, and
    # must start one rather than queue its closes for a thread that is not
    # there (a task's own fork, or the "fork" start method's workers).
    release = threading.Event()
    aside.run(lambda event: event.wait(10), release)
    segment = shared_memory.SharedMemory(create=True, size=unmapping.CLOSE_ASIDE)
    try:
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            code = 1
            try:
                unmapping.close(segment)
                deadline = time.monotonic() + 10
                while segment.buf is not None and time.monotonic() < deadline:
                    time.sleep(0.01)  # polling a condition, with a deadline
                code = 0 if segment.buf is None else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
        segment.close()
        segment.unlink()
    assert wait_until(aside_idle)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority: Linux")
def test_the_aside_thread_yields_the_cpu_to_the_application():
    # Its jobs can wait; on a machine whose cores the workers keep busy it
    # must not take CPU time from the GUI thread.
    seen = []
    done = threading.Event()

    def note(_):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        done.set()

    aside.run(note, None)
    assert done.wait(10)
    assert wait_until(aside_idle)
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen == [min(mine + aside.NICENESS, 19)]


def test_a_request_takes_a_segment_queued_for_warming_before_the_one_being_read(
    cache, held_reads
):
    first, second = submitted(os.urandom(SIZE)), submitted(os.urandom(SIZE))
    segment_cache.give_back([first, second], [])
    assert held_reads.reading.wait(10)  # reading into the first; the second waits
    assert segment_cache.take(SIZE) is second  # at once: no wait
    held_reads.release.set()
    assert wait_until(aside_idle)
    segment_cache.give_back([second], [])


def shm_file(name: str) -> str:
    return os.path.join(segment_cache.SHM_DIR, name.lstrip("/"))


def test_a_loan_the_cache_cannot_fill_is_a_new_segment_without_memory(cache):
    # Lent for a result the task may not return: no memory until written,
    # and unlinked (not cached) if it comes back unused.
    name = segment_cache.lend(SIZE, reusable)
    assert name is not None and name in cache
    assert os.stat(shm_file(name)).st_blocks == 0
    segment_cache.give_back([], [name])
    assert not os.path.exists(shm_file(name))


def test_a_new_loan_a_worker_wrote_comes_back_and_is_reused(cache):
    name = segment_cache.lend(SIZE, reusable)
    data = os.urandom(SIZE)
    fd = os.open(shm_file(name), os.O_WRONLY)  # as a worker writes it
    try:
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)
    segment = segment_cache.returned(name)
    assert bytes(segment.buf[:SIZE]) == data  # the result, read here
    segment_cache.give_back([segment], [])  # the result was dropped
    assert wait_until(aside_idle)
    assert segment_cache.take(SIZE) is segment
    segment_cache.give_back([segment], [])


def test_a_loan_comes_from_the_cache_when_it_can(cache):
    segment = submitted(os.urandom(SIZE))
    segment_cache.give_back([segment], [])
    assert wait_until(aside_idle)
    assert segment_cache.lend(SIZE, reusable) == segment.name
    assert cache == [segment.name]  # nothing new made
    segment_cache.give_back([], [segment.name])
    assert segment_cache.take(SIZE) is segment  # an unused cached loan is kept
    segment_cache.give_back([segment], [])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_unmaps_the_segments_nothing_uses(cache):
    # A worker of the "fork" start method would otherwise keep the memory
    # of every segment cached at its fork until it exits, long after the
    # application unlinked them.
    lent = segment_cache.lend(SIZE, reusable)
    data = os.urandom(SIZE)
    cached = submitted(data)
    segment_cache.give_back([cached], [])
    assert wait_until(aside_idle)
    in_use = submitted(os.urandom(SIZE))  # an argument's, say: not cached
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        code = 1
        try:
            with open("/proc/self/maps") as maps:
                paths = {line.split()[5] for line in maps if len(line.split()) > 5}
            idle_gone = not {f"/dev/shm/{cached.name}", f"/dev/shm/{lent}"} & paths
            code = 0 if idle_gone and f"/dev/shm/{in_use.name}" in paths else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert bytes(cached.buf[:SIZE]) == data  # the parent's mapping is intact
    segment_cache.give_back([in_use], [lent])


def test_a_loan_is_rather_a_segment_queued_for_warming(cache, held_reads):
    # The worker writes a loan through its own mapping: this process's need
    # not be warm, and the warm segments are left for submits, which write
    # through theirs.
    held_reads.release.set()
    warm = submitted(os.urandom(SIZE))
    segment_cache.give_back([warm], [])
    assert wait_until(aside_idle)
    held_reads.release.clear()
    being_read, queued = submitted(os.urandom(SIZE)), submitted(os.urandom(SIZE))
    segment_cache.give_back([being_read, queued], [])
    assert held_reads.reading.wait(10)
    assert segment_cache.lend(SIZE, reusable) == queued.name  # at once: no wait
    assert segment_cache.take(SIZE) is warm
    held_reads.release.set()
    assert wait_until(aside_idle)
    segment_cache.give_back([warm], [queued.name])


def test_a_segment_whose_warming_fails_is_cached_cold(cache, monkeypatch):
    def failing(*args):
        raise OSError("no")

    monkeypatch.setattr(segment_cache, "_fault_in", failing)
    data = os.urandom(SIZE)
    segment = submitted(data)
    segment_cache.give_back([segment], [])
    assert wait_until(aside_idle)
    assert segment_cache.take(SIZE) is segment
    assert segment_cache.is_cold(segment)  # so a submit writes its file
    segment_cache.give_back([segment], [])
    assert wait_until(aside_idle)
