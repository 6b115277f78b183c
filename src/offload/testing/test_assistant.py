"""``TestAssistant`` at the module path Traits Futures used
(``traits_futures.testing.test_assistant``)."""

from offload.testing.assistant import DEFAULT_TIMEOUT, TestAssistant

__all__ = ["DEFAULT_TIMEOUT", "TestAssistant"]
