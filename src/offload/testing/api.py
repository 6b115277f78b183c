"""Same names as :mod:`offload.testing`, at the path Traits Futures used.

Lets tests written for ``traits_futures.testing.api`` migrate by changing
the package name only.
"""

from offload.testing.assistant import DEFAULT_TIMEOUT, TestAssistant

__all__ = ["DEFAULT_TIMEOUT", "TestAssistant"]
