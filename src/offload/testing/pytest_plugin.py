"""pytest fixtures for code that uses offload (loaded via the pytest11 entry point).

Fixtures
--------
offload_event_loop
    An :class:`~offload.api.IEventLoop` for one test: a fresh asyncio loop,
    closed afterwards.  Override this fixture in your ``conftest.py`` to test
    on another loop.
offload_assistant
    An object with ``run_until(object, trait, condition, timeout=...)`` and
    ``exercise_event_loop()``, driving ``offload_event_loop``; both raise
    the exceptions that observers raise while they run, if Traits re-raises
    them (``push_exception_handler(reraise_exceptions=True)``).
traits_executor
    A :class:`~offload.api.TraitsExecutor` on ``offload_event_loop``, shut
    down (with a timeout) after the test; that shutdown raises, as the
    test's teardown, what observers raise during it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from offload.testing.assistant import DEFAULT_TIMEOUT, TestAssistant


class OffloadAssistant(TestAssistant):
    """The services of :class:`TestAssistant`, for pytest."""

    def __init__(self, event_loop: Any) -> None:
        self._event_loop = event_loop
        self._event_loop_helper = event_loop.event_loop_helper()
        self._event_loop_helper.init()

    @property
    def event_loop(self) -> Any:
        """The event loop being driven."""
        return self._event_loop

    def run_until(
        self,
        object: Any,
        trait: str,
        condition: Callable[[Any], bool],
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().run_until(object, trait, condition, timeout)

    def dispose(self) -> None:
        self._event_loop_helper.dispose()


@pytest.fixture
def offload_event_loop() -> Iterator[Any]:
    """A fresh :class:`~offload.api.AsyncioEventLoop` for one test, closed after it.

    Override this fixture in a ``conftest.py`` to run the tests on another
    loop; the other fixtures use whatever it returns.
    """
    from offload._event_loops.asyncio_loop import AsyncioEventLoop

    event_loop = AsyncioEventLoop()
    yield event_loop
    event_loop.close()


@pytest.fixture
def offload_assistant(offload_event_loop: Any) -> Iterator[OffloadAssistant]:
    """``run_until`` and ``exercise_event_loop`` for ``offload_event_loop``.

    Both run the loop on the test's thread, where the futures notify.
    """
    assistant = OffloadAssistant(offload_event_loop)
    yield assistant
    assistant.dispose()


@pytest.fixture
def traits_executor(offload_assistant: OffloadAssistant) -> Iterator[Any]:
    """A :class:`~offload.api.TraitsExecutor` on ``offload_event_loop``.

    Uses threads (the default context); shut down with a timeout of
    ``DEFAULT_TIMEOUT`` seconds after the test.
    """
    from offload._executor.executor import TraitsExecutor

    executor = TraitsExecutor(event_loop=offload_assistant.event_loop)
    yield executor
    executor.shutdown(timeout=DEFAULT_TIMEOUT)
