"""Where a large ``bytes`` is looked for before a pickle is made again with
it out of band (``out_of_band.holds_large_bytes``): deep, in ``__slots__``,
past a container too long to search, and without running the object's code."""

from __future__ import annotations

import dataclasses
from typing import Any

from offload._backends.out_of_band import holds_large_bytes

LIMIT = 1000
LARGE = bytes(LIMIT)


@dataclasses.dataclass(slots=True)
class Slotted:
    value: Any


class Private:
    __slots__ = ("__hidden", "unset")

    def __init__(self, value: Any) -> None:
        self.__hidden = value

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the search ran __getattr__({name!r})")


class Both(Slotted):
    def __init__(self, value: Any) -> None:
        super().__init__(None)
        self.extra = value  # in the __dict__ of a subclass without slots


def nested(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


def test_found_deep_down():
    assert holds_large_bytes(nested(LARGE, 20), LIMIT)


def test_found_in_slots_private_ones_included_without_running_getattr():
    assert holds_large_bytes(Slotted(LARGE), LIMIT)
    assert holds_large_bytes(Private(LARGE), LIMIT)
    assert holds_large_bytes(Both(LARGE), LIMIT)
    assert not holds_large_bytes(Private(b"small"), LIMIT)


def test_found_beside_a_container_too_long_to_search():
    assert holds_large_bytes([list(range(100_000)), {"x": LARGE}], LIMIT)
    assert holds_large_bytes(({1, 2, 3}, frozenset({LARGE})), LIMIT)


def test_small_ones_and_numbers_are_not_large():
    assert not holds_large_bytes([bytes(LIMIT - 1), list(range(100_000)), 3.5], LIMIT)
    assert holds_large_bytes(memoryview(LARGE), LIMIT)
