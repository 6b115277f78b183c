"""Tasks for the payload tests, importable by worker processes."""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import time
from typing import Any

#: Arguments a task kept after it returned (see ``keep``).
_KEPT: list[Any] = []


def shm_mappings() -> list[str]:
    """The payload segments this process maps now (Linux)."""
    with open("/proc/self/maps") as maps:
        return sorted({
            line.split()[-1] for line in maps
            if "/dev/shm/ofl" in line and "_p" in line.split()[-1]
        })


def describe(array: Any) -> tuple[float, bool, list[str]]:
    """(sum, writable, payload segments mapped) of an argument, in the worker."""
    return float(array.sum()), bool(array.flags.writeable), shm_mappings()


def negate(array: Any) -> Any:
    import numpy

    return numpy.negative(array)


def first(array: Any) -> float:
    return float(array[0])


def keep(array: Any) -> float:
    """Keep a reference to the argument after the task (a cache)."""
    _KEPT.append(array)
    return float(array[0])


def kept_first() -> float:
    return float(_KEPT[-1][0])


def arrays_as_progress(count: int, size: int, progress: Any) -> int:
    import numpy

    for n in range(count):
        progress(numpy.full(size, float(n)))
    return count


def arrays_as_items(count: int, size: int) -> Any:
    import numpy

    for n in range(count):
        yield numpy.full(size, float(n))


def pid() -> int:
    return os.getpid()


def segment_then_die(size: int) -> None:
    """Put ``size`` bytes in shared memory as a result would, then die
    before sending it (SIGKILL: no clean-up of any kind)."""
    from offload._backends.process.shm import Outgoing

    segments = Outgoing()
    segments(pickle.PickleBuffer(bytearray(size)))
    segments.keep()
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)  # never reached


def hold_and_wait(array: Any, path: str, timeout: float = 30.0) -> None:
    """Map the argument, say so in ``path``, then sleep (to be killed)."""
    with open(path + ".tmp", "w") as file:
        file.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(timeout)


def fill(array: Any, value: float) -> list[str]:
    """Write ``value`` all over ``array``; the payload segments mapped."""
    array[...] = value
    return shm_mappings()


def make_shared(size: int, value: float) -> Any:
    from offload.api import shared_array

    array = shared_array(size)
    array[:] = value
    return array


def same_back(array: Any) -> Any:
    array[0] = -1.0
    return array


# bytes, bytearray, memoryview, PickleBuffer ----------------------------------


def make_buffer(kind: str, size: int, fill: int = 7) -> Any:
    """A buffer of ``kind`` ("bytes", "bytearray", "memoryview",
    "readonly-memoryview", "picklebuffer") of ``size`` bytes of ``fill``,
    last byte 1."""
    data = bytearray([fill]) * size
    if size:
        data[-1] = 1
    if kind == "bytes":
        return bytes(data)
    if kind == "bytearray":
        return data
    if kind == "memoryview":
        return memoryview(data)
    if kind == "readonly-memoryview":
        return memoryview(bytes(data))
    if kind == "picklebuffer":
        return pickle.PickleBuffer(data)
    raise ValueError(kind)


def inspect_buffer(value: Any) -> dict[str, Any]:
    """What a task sees of a buffer argument, and the segments it maps."""
    view = memoryview(value)
    return {
        "type": type(value).__name__,
        "nbytes": view.nbytes,
        "readonly": view.readonly,
        "format": view.format,
        "shape": view.shape,
        "first": view.tobytes()[:1],
        "last": view.tobytes()[-1:],
        "mapped": shm_mappings(),
    }


def buffers_as_progress(kind: str, count: int, size: int, progress: Any) -> int:
    for n in range(count):
        progress(make_buffer(kind, size, n + 2))
    return count


def buffers_as_items(kind: str, count: int, size: int) -> Any:
    for n in range(count):
        yield make_buffer(kind, size, n + 2)


def write_into(view: Any, value: int) -> int:
    """Write ``value`` at the start of a writable buffer argument."""
    view[0] = value
    return int(view[0])


def echo_buffers(*values: Any) -> tuple:
    """The arguments, sent back."""
    return values


@dataclasses.dataclass(slots=True)
class Packed:
    """A result type with ``__slots__`` (``dataclass(slots=True)``)."""

    name: str
    data: Any


def deep_bytes(size: int, depth: int) -> Any:
    """A large ``bytes`` in a slotted object ``depth`` lists down, beside a
    list of 10,000 numbers (too long to search)."""
    value: Any = Packed("deep", make_buffer("bytes", size, 5))
    for _ in range(depth):
        value = [list(range(10_000)), value]
    return value


def dig(value: Any) -> Any:
    """What ``deep_bytes`` buried."""
    while isinstance(value, list):
        value = value[1]
    return value
