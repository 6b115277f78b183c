"""A progress bar that shows a percentage and a message: a TraitsUI editor.

The edited trait holds ``(fraction, text)``: ``fraction`` from 0.0 to 1.0,
or None for work of unknown length (a busy bar), and the text to show with
it.  TraitsUI's own ``ProgressEditor`` was not used: it wraps a pyface
progress *dialog*, which on Qt processes events inside each update (so a
delivery of offload's messages could re-enter itself) and on wx closes
itself when the bar reaches its maximum.
"""

from __future__ import annotations

from typing import Any

from traits.etsconfig.api import ETSConfig
from traitsui.api import EditorFactory


class ProgressBarEditor(EditorFactory):
    """A TraitsUI editor: a progress bar with a text, for a ``(fraction,
    text)`` trait.

    ``fraction`` goes from 0.0 to 1.0, or is None for work of unknown
    length (a busy bar); ``text`` is shown on the bar (Qt) or beside it
    (wx), e.g. ``(0.42, "42% · Resizing photo 3")``.  Use it on the main
    thread, like any editor::

        bar = Tuple(Any(), Str(), value=(0.0, "Waiting"))
        traits_view = View(UItem("bar", editor=ProgressBarEditor()))
    """

    def _get_simple_editor_class(self) -> Any:
        return _toolkit_editor()

    def _get_custom_editor_class(self) -> Any:
        return _toolkit_editor()

    def _get_readonly_editor_class(self) -> Any:
        return _toolkit_editor()

    def _get_text_editor_class(self) -> Any:
        return _toolkit_editor()


def _toolkit_editor() -> Any:
    """The editor class of the toolkit TraitsUI uses (imports it)."""
    if ETSConfig.toolkit == "wx":
        from offload.ui._bar_wx import WxBarEditor

        return WxBarEditor
    from offload.ui._bar_qt import QtBarEditor

    return QtBarEditor
