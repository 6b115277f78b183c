"""wx side of :class:`offload.ui._list.SubviewListEditor`."""

from __future__ import annotations

from typing import Any

import wx
from traitsui.wx.editor import Editor

from offload.ui._subviews import SubviewsMixin


class WxSubviewList(SubviewsMixin, Editor):
    """Sub-views in a vertical ``BoxSizer`` of a ``ScrolledWindow``."""

    def init(self, parent: Any) -> None:
        window = wx.ScrolledWindow(parent, -1, style=wx.VSCROLL)
        window.SetScrollRate(0, 10)
        self._sizer = wx.BoxSizer(wx.VERTICAL)
        window.SetSizer(self._sizer)
        self.control = window
        self._start_following()

    def _parent_of_items(self) -> Any:
        return self.control

    def _insert(self, index: int, ui: Any) -> None:
        self._sizer.Insert(index, ui.control, 0, wx.EXPAND | wx.BOTTOM, 2)

    def _remove(self, ui: Any) -> None:
        self._sizer.Detach(ui.control)
        ui.dispose()

    def _relayout(self) -> None:
        self.control.FitInside()
        self.control.Layout()
