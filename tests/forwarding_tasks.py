"""Tasks that warn and log (importable by name in worker processes)."""

from __future__ import annotations

import logging
import warnings
from typing import Any

logger = logging.getLogger("offload_tests.forwarding")


class TaskWarning(UserWarning):
    """A warning category of the application's own."""


def warn(message: str, category: type[Warning] = UserWarning) -> int:
    """Warn once; return the line number of the warning."""
    warnings.warn(message, category, stacklevel=1)  # WARN LINE
    return 1


def warn_line() -> int:
    """The line of ``warn``'s ``warnings.warn`` call."""
    with open(__file__, encoding="utf-8") as source:
        for number, line in enumerate(source, start=1):
            if "# WARN LINE" in line and "warnings.warn" in line:
                return number
    raise AssertionError("no warn line")


def warn_many(times: int) -> int:
    """The same warning from the same line, ``times`` times."""
    for _ in range(times):
        warnings.warn("again and again", UserWarning, stacklevel=1)
    return times


def log(level: int, message: str, *args: Any, name: str = logger.name) -> str:
    """Log one record; return the message as formatted."""
    logging.getLogger(name).log(level, message, *args)
    return message % args if args else message


def log_exception() -> None:
    """Log an exception with its traceback."""
    try:
        raise ValueError("inner trouble")
    except ValueError:
        logger.exception("it failed")


def log_between_progress(progress: Any) -> None:
    """progress 1, a record, progress 2: they must arrive in this order."""
    progress(1)
    logger.warning("between")
    progress(2)


def log_with_extra() -> None:
    """A record with an extra attribute that does not pickle."""
    logger.warning("with extra", extra={"lock": _Unpicklable(), "count": 3})


class _Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("no pickling")

    def __repr__(self) -> str:
        return "<unpicklable>"
