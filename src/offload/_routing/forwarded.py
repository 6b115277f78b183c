"""Main-thread end of forwarded warnings and log records (``FORWARDED``).

A task in a worker process warns or logs; the worker sends what it said
on the task's channel (``offload._backends.forwarding``), and the future's
``receive`` hands it here, on the main thread, in order with the task's
other messages.  Here it is said again, as if the application had said it:

* a warning through ``warnings.warn_explicit`` with its category, message,
  file name, line number and module, so the application's filters decide
  (``error`` raises it here: the exception then goes where an observer's
  exception goes, to whoever runs the event loop);
* a log record through ``logging.getLogger(record.name).handle(record)``,
  if that logger is enabled for the record's level, with
  ``record.offload_task`` naming the task.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

logger = logging.getLogger("offload.forwarded")

#: Per module, the registry ``warn_explicit`` keeps of the warnings shown,
#: so that the "default" and "module" actions show a repeated warning
#: once, as for the application's own warnings.
_registries: dict[str, dict] = {}


def reissue(arg: tuple) -> None:
    """Say again, on the main thread, what a task warned or logged."""
    kind, payload = arg
    if kind == "log":
        _log(payload)
    elif kind == "warning":
        _warn(*payload)
    else:
        logger.error("offload internal error: unknown forwarded kind %r", kind)


def _log(payload: dict) -> None:
    record = logging.makeLogRecord(payload)
    target = logging.getLogger(record.name)
    if target.isEnabledFor(record.levelno):
        target.handle(record)


def _warn(categories: tuple, text: str, filename: str, lineno: int, module: str) -> None:
    category = _category(categories)
    registry = _registries.setdefault(module, {})
    warnings.warn_explicit(text, category, filename, lineno, module, registry)


def _category(categories: tuple) -> type[Warning]:
    """The first class of the warning's MRO that the application has."""
    for module_name, qualname in categories:
        if module_name == "__mp_main__":
            module_name = "__main__"
        # Only a module the application has imported: importing one here,
        # on a worker's word, would run its import-time code.
        found: Any = sys.modules.get(module_name)
        for part in qualname.split("."):
            found = getattr(found, part, None)
        if found is None:
            continue
        if isinstance(found, type) and issubclass(found, Warning):
            return found
    return UserWarning
