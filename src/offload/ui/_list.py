"""A vertical, scrolling list of sub-views, one per item: a TraitsUI editor.

What ``ActivityView`` shows its rows in.  TraitsUI's own ``ListEditor``
(custom style) was not used: on PyQt6 it fails as it is made (it connects
``QSignalMapper.mapped``, which Qt 6 removed), and on every change of the
list it rebuilds every item's sub-view, where this one adds and removes
only those that came and went.  Items are only ever appended or removed,
never reordered.
"""

from __future__ import annotations

from typing import Any

from traits.api import Instance
from traits.etsconfig.api import ETSConfig
from traitsui.api import EditorFactory, View


class SubviewListEditor(EditorFactory):
    """Editor of a ``List(Instance(HasTraits))``: each item's ``view`` below
    the previous one, in a scrolling area (main thread)."""

    #: The view of each item.
    view = Instance(View)

    def _get_simple_editor_class(self) -> Any:
        return _toolkit_editor()

    def _get_custom_editor_class(self) -> Any:
        return _toolkit_editor()

    def _get_readonly_editor_class(self) -> Any:
        return _toolkit_editor()


def _toolkit_editor() -> Any:
    if ETSConfig.toolkit == "wx":
        from offload.ui._list_wx import WxSubviewList

        return WxSubviewList
    from offload.ui._list_qt import QtSubviewList

    return QtSubviewList
