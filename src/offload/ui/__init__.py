"""Ready-made TraitsUI views of offload's futures (needs the ``traitsui`` extra).

:class:`ActivityView`
    Many futures, one row each (name, state, a bar with percentage and
    message, elapsed time, Cancel), with one bar for them all.
:func:`run_with_progress`
    A modal progress dialog for one future, returning when it is done.
:class:`ProgressBarEditor`
    The bar both use, for your own views: edits a ``(fraction, text)``
    trait, showing the text on (Qt) or beside (wx) the bar.

Importing this module imports TraitsUI and Pyface (never imported by
``import offload.api``); the toolkit itself loads when a window is made.
Everything here is used on the main thread, with an executor whose event
loop is the GUI's (the default ``ETSEventLoop``, ``QtEventLoop``,
``WxEventLoop``).
"""

from __future__ import annotations

try:
    import pyface  # noqa: F401
    import traitsui  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        f"offload.ui needs TraitsUI and Pyface ({error}): pip install "
        "'offload[traitsui]' and a toolkit, e.g. 'offload[traitsui,pyside6]'"
    ) from error

from offload.ui._bar import ProgressBarEditor
from offload.ui.activity import ActivityView
from offload.ui.dialog import run_with_progress

__all__ = ["ActivityView", "ProgressBarEditor", "run_with_progress"]
