"""Test helpers for code that uses offload.

:class:`TestAssistant` is a ``unittest.TestCase`` mixin; the same services
come as pytest fixtures (``offload_assistant``, ``offload_event_loop``,
``traits_executor``), registered automatically through the ``pytest11``
entry point.
"""

from offload.testing.assistant import DEFAULT_TIMEOUT, TestAssistant

__all__ = ["DEFAULT_TIMEOUT", "TestAssistant"]
