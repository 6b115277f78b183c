"""Progress tasks for the rate-limit tests (importable by worker processes)."""

from __future__ import annotations

from typing import Any

from task_functions import wait_for_file


def report_then_wait(release: str, progress: Any) -> str:
    """Report 1 then 2 at once, then wait for ``release`` before ending."""
    progress(1)
    progress(2)
    wait_for_file(release)
    return "released"

