"""The asyncio loop's pingee: each ping one call on the loop's thread.

It wakes the loop through a socket pair of its own (``add_reader``), and
through ``call_soon_threadsafe`` on loops that cannot watch a socket.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import ping_from_threads
from offload.api import AsyncioEventLoop


class ProactorLike(asyncio.SelectorEventLoop):
    """A loop that cannot watch a socket, as Windows' proactor loop."""

    def add_reader(self, *args: Any) -> None:
        raise NotImplementedError


@pytest.fixture(params=["socket", "call_soon_threadsafe"])
def loop(request: pytest.FixtureRequest) -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop() if request.param == "socket" else ProactorLike()
    yield loop
    loop.close()


class Counter:
    def __init__(self) -> None:
        self.threads: list[int] = []

    def __call__(self) -> None:
        self.threads.append(threading.get_ident())

    @property
    def count(self) -> int:
        return len(self.threads)


def run_until(loop: asyncio.AbstractEventLoop, condition: Callable[[], bool],
              timeout: float = 20.0) -> None:
    async def wait() -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the condition never held")
            await asyncio.sleep(0.001)

    loop.run_until_complete(wait())


def run_a_while(loop: asyncio.AbstractEventLoop, turns: int = 50) -> None:
    async def spin() -> None:
        for _ in range(turns):
            await asyncio.sleep(0)

    loop.run_until_complete(spin())


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_every_ping_calls_back_once_on_the_loops_thread(loop):
    counter = Counter()
    pingee = AsyncioEventLoop(event_loop=loop).pingee(counter)
    pingee.connect()
    try:
        # Many more pings than a socket's buffer holds bytes, while the
        # loop does not run: none may be lost or merged.
        ping_from_threads(pingee, threads=4, each=5_000)
        run_until(loop, lambda: counter.count >= 20_000)
        run_a_while(loop)
    finally:
        pingee.disconnect()
    assert counter.count == 20_000
    assert set(counter.threads) == {threading.get_ident()}


def test_pings_while_the_loop_runs_each_call_back_once(loop):
    counter = Counter()
    pingee = AsyncioEventLoop(event_loop=loop).pingee(counter)
    pingee.connect()
    try:
        async def ping_in_background() -> None:
            await loop.run_in_executor(None, ping_from_threads, pingee, 2, 2_000)

        loop.run_until_complete(ping_in_background())
        run_until(loop, lambda: counter.count >= 4_000)
        run_a_while(loop)
    finally:
        pingee.disconnect()
        loop.run_until_complete(loop.shutdown_default_executor())
    assert counter.count == 4_000


def test_pings_before_connect_and_after_disconnect_do_nothing(loop):
    counter = Counter()
    pingee = AsyncioEventLoop(event_loop=loop).pingee(counter)
    pingee.ping()  # not connected yet
    pingee.connect()
    ping_from_threads(pingee, threads=2, each=10)
    # Pings sent but not yet delivered are dropped by disconnect.
    pingee.disconnect()
    ping_from_threads(pingee, threads=2, each=10)
    run_a_while(loop)
    assert counter.count == 0


def test_a_pingee_can_connect_again(loop):
    counter = Counter()
    pingee = AsyncioEventLoop(event_loop=loop).pingee(counter)
    pingee.connect()
    pingee.disconnect()
    pingee.connect()
    try:
        pingee.ping()
        run_until(loop, lambda: counter.count == 1)
    finally:
        pingee.disconnect()


def test_disconnect_from_inside_a_call_back_stops_the_rest(loop):
    pingee: Any = None
    calls = []

    def on_ping() -> None:
        calls.append(1)
        pingee.disconnect()

    pingee = AsyncioEventLoop(event_loop=loop).pingee(on_ping)
    pingee.connect()
    for _ in range(5):
        pingee.ping()
    run_a_while(loop)
    assert calls == [1]


def ping_and_run(loop, on_ping, pings, until) -> None:
    """Connect a pingee that calls ``on_ping(pingee)``, ping it ``pings``
    times, run the loop until ``until()`` and a while longer, disconnect."""
    pingee: Any = None
    pingee = AsyncioEventLoop(event_loop=loop).pingee(lambda: on_ping(pingee))
    pingee.connect()
    try:
        for _ in range(pings):
            pingee.ping()
        run_until(loop, until)
        run_a_while(loop)
    finally:
        pingee.disconnect()


def test_a_ping_during_a_call_back_calls_back_again(loop):
    # Its wake-up byte is read with the one that woke the loop: it must
    # still come (the inbox pings itself this way when a slice runs out).
    calls = []

    def on_ping(pingee) -> None:
        calls.append(1)
        if len(calls) < 3:
            pingee.ping()
            pingee.ping()

    ping_and_run(loop, on_ping, pings=1, until=lambda: len(calls) >= 5)
    assert len(calls) == 5


def test_a_call_back_that_raises_does_not_lose_the_other_pings(loop):
    calls = []

    def on_ping(pingee) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("an observer's trouble")

    errors: list[Any] = []
    loop.set_exception_handler(lambda loop, context: errors.append(context["exception"]))
    ping_and_run(loop, on_ping, pings=5, until=lambda: len(calls) >= 5)
    assert len(calls) == 5
    assert [type(error) for error in errors] == [ValueError]


def test_ping_is_harmless_once_the_loop_is_closed():
    loop = asyncio.new_event_loop()
    counter = Counter()
    pingee = AsyncioEventLoop(event_loop=loop).pingee(counter)
    pingee.connect()
    loop.close()
    ping_from_threads(pingee, threads=2, each=100)
    pingee.disconnect()
    pingee.ping()
    assert counter.count == 0


def test_the_sockets_are_closed_at_disconnect_or_when_the_pingee_goes():
    import gc

    at_start = open_descriptors()
    loop = asyncio.new_event_loop()
    try:
        before = open_descriptors()
        pingee = AsyncioEventLoop(event_loop=loop).pingee(Counter())
        pingee.connect()
        assert open_descriptors() == before + 2
        pingee.disconnect()
        assert open_descriptors() == before
        # A loop closed and dropped without a disconnect: the pingee's
        # sockets go with it.
        pingee = AsyncioEventLoop(event_loop=loop).pingee(Counter())
        pingee.connect()
        assert open_descriptors() == before + 2
    finally:
        loop.close()
    del loop, pingee
    gc.collect()
    assert open_descriptors() == at_start
