"""Cancel flags and events in shared memory, for worker processes.

A flag is one int64 slot of a shared-memory segment and a generation number
unique to the flag.  ``set()`` writes the generation into the slot,
``clear()`` writes 0; ``is_set()`` compares.  All touch local memory only:
no message, no helper process (Traits Futures asked a
``multiprocessing.Manager`` process, a round trip of about 2.5 ms per task).
``wait()`` polls the slot (see :meth:`_FlagBase.wait`).

A paused task's flag is *knocked*: its slot holds ``-(generation << 16 |
controls posted)``, which ``is_set()`` reads as unset and ``attention()``
(what a task's pause points ask) as "look at your pause gate"
(``pausing.py``).  A knock never overwrites a set flag.

Two kinds share the segments:

* the executor's cancel flags (:class:`ProcessCancelFlag`, one per task),
  set only in the main process and read in the task's worker;
* the events of ``context.event()`` (:class:`ProcessEvent`), which the
  application's tasks may also set and clear in workers.

The slot of a cancel flag is reused, safely:

* it goes back to the free list only when the main process's flag object
  is garbage collected, which happens after both the worker has finished
  the task (the pool drops the task) and the future is done (it drops its
  ``cancel``), so no running task still reads a reused slot;
* a new flag gets a new generation, so an old ``set()`` never shows through.

The slot of an event is never given back: a worker may still hold, and
write through, a copy of an event that the main process has dropped (an
event made inline in a ``submit_call``), and its ``clear()`` must not
unset another task's cancel flag.  An event costs 8 bytes of shared memory
until its context is closed.

Segments of ``SLOTS_PER_SEGMENT`` slots are made as needed (one per that
many tasks outstanding at once) and attached by workers by name on first
use.  The context unlinks them in ``close()``, or at the interpreter's exit
if it was never closed; if the application dies, the ``multiprocessing``
resource tracker unlinks them.
"""

from __future__ import annotations

import array
import atexit
import itertools
import math
import os
import secrets
import tempfile
import threading
import time
import weakref
from multiprocessing import shared_memory
from typing import Any

from offload._backends.process import tracker
from offload._backends.process.pausing import (
    KNOCK_BITS,
    KNOCK_MASK,
    ProcessPauseGate,
    ProcessWorkerGate,
)

#: Slots per shared-memory segment (8 bytes each).
SLOTS_PER_SEGMENT = 8192

#: First and longest pause (s) between two looks of ``wait()`` at its slot:
#: the longest bounds how late a waiter sees ``set()``.
FIRST_PAUSE = 0.0001
LONGEST_PAUSE = 0.002

#: (prefix, segment index) -> int64 view of that segment, in this process.
_VIEWS: dict[tuple[str, int], memoryview] = {}

#: Segments a worker attached to, kept open while the worker lives.
_ATTACHED: dict[tuple[str, int], shared_memory.SharedMemory] = {}

_attach_lock = threading.Lock()

#: The open ``FlagSlots`` of this process, for the exit (see _close_at_exit).
_live_slots: weakref.WeakSet[FlagSlots] = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    # An application that exits without closing its context: the resource
    # tracker would unlink the segments too, but warn of "leaked
    # shared_memory objects" on the application's terminal; and a segment
    # left to the interpreter's last collection, its views still exported,
    # would print a BufferError from its __del__.  So close them (flags
    # still alive read as set).  Workers still running keep what they
    # mapped.  Registered before the process pool's own exit handler
    # (the pool imports this module through the worker module), so it runs
    # after that one has stopped the workers.
    for slots in list(_live_slots):
        slots.close()


def _int64_view(shm: shared_memory.SharedMemory) -> memoryview:
    buffer = shm.buf
    assert buffer is not None  # None only once closed
    return buffer.cast("q")


def _segment_name(prefix: str, segment: int) -> str:
    return f"{prefix}_{segment}"


class FlagSlots:
    """Hands out cancel flags; owned by one context, in the main process."""

    def __init__(self) -> None:
        # Short: macOS limits shared-memory names to 31 characters.
        self._prefix = f"ofl{os.getpid() % 0xFFFFF:x}{secrets.token_hex(3)}"
        self._segments: list[shared_memory.SharedMemory] = []
        self._views: list[memoryview] = []
        #: (view, segment, slot) free for reuse; appended to by ``__del__``.
        #: Slots free for reuse, as ``segment * SLOTS_PER_SEGMENT + slot``;
        #: appended to by ``__del__``.  A C array, not a list of tuples: a
        #: hundred thousand small objects made as futures end would be
        #: scattered through the allocator's pools and keep them all
        #: resident after the futures are gone.
        self._free = array.array("q")
        self._next_slot = SLOTS_PER_SEGMENT
        self._generations = itertools.count(1)
        self._lock = threading.Lock()
        # Dropped without close() (a context nobody closed): release and
        # unlink then.  The segments' own __del__ would raise BufferError
        # (the views of them are still exported) and leave their names to
        # the resource tracker, which warns at exit.  Not at exit:
        # _close_at_exit runs then, once the workers are stopped.
        release = weakref.finalize(
            self, _release_segments, self._prefix, self._segments, self._views
        )
        release.atexit = False

    def new_flag(self) -> ProcessCancelFlag:
        """A fresh, unset cancel flag.  Any thread; about a microsecond."""
        try:
            segment, slot = divmod(self._free.pop(), SLOTS_PER_SEGMENT)
            view = self._views[segment]
        except IndexError:
            view, segment, slot = self._allocate()
        return ProcessCancelFlag(
            view, self._prefix, segment, slot, next(self._generations), self._free
        )

    def new_event(self) -> ProcessEvent:
        """A fresh, unset event, whose slot is never reused.  Any thread."""
        view, segment, slot = self._allocate()
        return ProcessEvent(view, self._prefix, segment, slot, next(self._generations))

    def close(self) -> None:
        """Release and unlink every segment.  Flags still alive read as set."""
        with self._lock:
            self._free = array.array("q")
            _release_segments(self._prefix, self._segments, self._views)
            self._next_slot = SLOTS_PER_SEGMENT
        _live_slots.discard(self)

    def _allocate(self) -> tuple[memoryview, int, int]:
        with self._lock:
            if self._next_slot >= SLOTS_PER_SEGMENT:
                segment = len(self._segments)
                with tracker.guard:
                    shm = shared_memory.SharedMemory(
                        name=_segment_name(self._prefix, segment),
                        create=True,
                        size=SLOTS_PER_SEGMENT * 8,
                    )
                view = _int64_view(shm)
                _live_slots.add(self)
                self._segments.append(shm)
                self._views.append(view)
                _VIEWS[self._prefix, segment] = view
                self._next_slot = 0
            segment = len(self._segments) - 1
            slot = self._next_slot
            self._next_slot += 1
            return self._views[segment], segment, slot


def _release_segments(
    prefix: str, segments: list[shared_memory.SharedMemory], views: list[memoryview]
) -> None:
    """Release, close and unlink ``segments``, emptying both lists."""
    for index, (shm, view) in enumerate(zip(segments, views, strict=True)):
        _VIEWS.pop((prefix, index), None)
        view.release()
        shm.close()
        try:
            with tracker.guard:
                shm.unlink()
        except FileNotFoundError:
            pass
    segments.clear()
    views.clear()


class _FlagBase:
    """What both ends of a flag do: read and write the shared slot."""

    __slots__ = ("_view", "_prefix", "_segment", "_slot", "_generation")

    _view: Any
    _prefix: str
    _segment: int
    _slot: int
    _generation: int

    def __init__(self, view: Any, prefix: str, segment: int, slot: int,
                 generation: int) -> None:
        self._view = view
        self._prefix = prefix
        self._segment = segment
        self._slot = slot
        self._generation = generation

    def __reduce__(self) -> tuple:
        return (_attach, (self._prefix, self._segment, self._slot, self._generation))

    def set(self) -> None:
        """Set the flag (for a cancel flag: ask for cancellation).  Any
        thread, any process."""
        try:
            self._view[self._slot] = self._generation
        except ValueError:
            pass  # the context is closed: there is nothing left to signal

    def is_set(self) -> bool:
        """True once :meth:`set` was called.  Any thread, any process."""
        try:
            return self._view[self._slot] == self._generation
        except ValueError:
            return True  # the context is closed: stop

    def attention(self) -> bool:
        """True once set or knocked (a task's pause point asks it).  Any
        thread, any process; about as cheap as :meth:`is_set`."""
        try:
            value = self._view[self._slot]
        except ValueError:
            return True
        generation = self._generation
        return value == generation or (
            value < 0 and -value >> KNOCK_BITS == generation
        )

    def knock(self, count: int) -> None:
        """Tell the task its pause gate has posted ``count`` controls in
        all (main process), unless the flag is set: a knock never hides a
        cancel.  The slot holds ``-(generation << KNOCK_BITS | count)``."""
        generation = self._generation
        try:
            if self._view[self._slot] != generation:
                self._view[self._slot] = -(
                    (generation << KNOCK_BITS) | (count & KNOCK_MASK)
                )
        except ValueError:
            pass

    def posted(self) -> int | None:
        """The count of the last :meth:`knock` (modulo ``KNOCK_MASK + 1``),
        or None if the flag is set or was never knocked.  Any process."""
        try:
            value = self._view[self._slot]
        except ValueError:
            return None
        if value < 0 and -value >> KNOCK_BITS == self._generation:
            return -value & KNOCK_MASK
        return None

    def pause_address(self) -> str:
        """Where the task's pause gate listens: unique to this flag."""
        return os.path.join(
            tempfile.gettempdir(),
            f"{self._prefix}p{self._segment}_{self._slot}_{self._generation}",
        )

    def clear(self) -> None:
        """Unset the flag.  Any thread, any process."""
        try:
            self._view[self._slot] = 0
        except ValueError:
            pass

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set, or ``timeout`` seconds; return
        :meth:`is_set` (so False on a timeout).  Any thread, any process.

        It polls the shared slot, pausing between looks: 0.1 ms at first,
        doubling up to ``LONGEST_PAUSE`` (2 ms).  So a waiter wakes at most
        about 2 ms (plus the system's scheduling delay) after ``set()``, and
        a long wait costs some 500 looks a second, a fraction of a percent
        of a core.  A flag whose context is closed reads as set.
        """
        if self.is_set():
            return True
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        pause = FIRST_PAUSE
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self.is_set()
            time.sleep(min(pause, remaining))
            if self.is_set():
                return True
            pause = min(pause * 2, LONGEST_PAUSE)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} slot {self._segment}:{self._slot} "
            f"generation {self._generation}>"
        )


class ProcessCancelFlag(_FlagBase):
    """The main process's flag: gives its slot back when garbage collected."""

    # _gate: left unassigned (nothing more per task) until pause_gate().
    __slots__ = ("_free", "_gate")

    def __init__(
        self, view: memoryview, prefix: str, segment: int, slot: int,
        generation: int, free: array.array,
    ) -> None:
        self._view = view
        self._prefix = prefix
        self._segment = segment
        self._slot = slot
        self._generation = generation
        self._free = free

    def __del__(self) -> None:
        self._free.append(self._segment * SLOTS_PER_SEGMENT + self._slot)

    def set(self) -> None:
        """Ask for cancellation; wake the task if it is paused."""
        super().set()
        gate = getattr(self, "_gate", None)
        if gate is not None:
            gate.cancel()

    def pause_gate(self) -> ProcessPauseGate:
        """A pause gate for the task of this flag (main thread, once)."""
        gate = self._gate = ProcessPauseGate(self.pause_address(), self.knock)
        return gate


class ProcessEvent(_FlagBase):
    """The main process's event (``context.event()``): keeps its slot."""

    __slots__ = ()


class WorkerCancelFlag(_FlagBase):
    """A flag or event unpickled in a worker (or anywhere else): never
    frees its slot."""

    __slots__ = ()

    def worker_gate(self) -> ProcessWorkerGate:
        """The task's side of its pause gate (worker, once knocked)."""
        return ProcessWorkerGate(self.pause_address(), self.posted)


def _attach(prefix: str, segment: int, slot: int, generation: int) -> WorkerCancelFlag:
    """Unpickle a flag: find or attach its segment in this process."""
    key = (prefix, segment)
    view = _VIEWS.get(key)
    if view is None:
        view = _attach_segment(key)
    return WorkerCancelFlag(view, prefix, segment, slot, generation)


def _attach_segment(key: tuple[str, int]) -> Any:
    with _attach_lock:
        view = _VIEWS.get(key)
        if view is not None:
            return view
        name = _segment_name(*key)
        try:
            try:
                # Python 3.13+: the creator alone tracks the segment.
                shm = shared_memory.SharedMemory(name=name, track=False)  # type: ignore[call-arg]
            except TypeError:
                # Before 3.13 attaching registers the segment with the
                # resource tracker too; workers share the application's
                # tracker, where a second registration of a name is a no-op.
                with tracker.guard:
                    shm = shared_memory.SharedMemory(name=name)
        except FileNotFoundError:
            # The context was closed: every flag of it reads as set.
            return _ClosedView()
        view = _int64_view(shm)
        _ATTACHED[key] = shm
        _VIEWS[key] = view
        return view


def detach_all() -> None:
    """Close the segments this process attached (a worker, as it exits)."""
    with _attach_lock:
        for key, shm in list(_ATTACHED.items()):
            view = _VIEWS.pop(key, None)
            if view is not None:
                view.release()
            try:
                shm.close()
            except BufferError:
                pass  # a task still holds a flag's view; the OS frees it at exit
        _ATTACHED.clear()


class _ClosedView:
    """Stands for the view of a segment that no longer exists."""

    def __getitem__(self, index: int) -> int:
        raise ValueError("the context of this flag is closed")

    def __setitem__(self, index: int, value: int) -> None:
        raise ValueError("the context of this flag is closed")
