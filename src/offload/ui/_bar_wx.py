"""wx side of :class:`offload.ui._bar.ProgressBarEditor`: a gauge and a label."""

from __future__ import annotations

from typing import Any

import wx
from traitsui.wx.editor import Editor

from offload.ui._bar_value import RESOLUTION, bar_value


class WxBarEditor(Editor):
    """A ``wx.Gauge`` with the text beside it (a gauge draws no text)."""

    def init(self, parent: Any) -> None:
        panel = wx.Panel(parent, -1)
        sizer = wx.BoxSizer(wx.HORIZONTAL)
        self._gauge = wx.Gauge(panel, -1, RESOLUTION, size=(120, -1))
        self._label = wx.StaticText(panel, -1, "")
        sizer.Add(self._gauge, 1, wx.EXPAND | wx.RIGHT, 6)
        sizer.Add(self._label, 1, wx.ALIGN_CENTER_VERTICAL)
        panel.SetSizer(sizer)
        self.control = panel

    def update_editor(self) -> None:
        fraction, text = self.value
        if fraction is None:
            self._gauge.Pulse()
        else:
            self._gauge.SetValue(bar_value(fraction))
        self._label.SetLabel(text)
