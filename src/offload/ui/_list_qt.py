"""Qt side of :class:`offload.ui._list.SubviewListEditor`."""

from __future__ import annotations

from typing import Any

from pyface.qt import QtGui
from traitsui.qt.editor import Editor

from offload.ui._subviews import SubviewsMixin


class QtSubviewList(SubviewsMixin, Editor):
    """Sub-views in a ``QVBoxLayout`` inside a ``QScrollArea``."""

    def init(self, parent: Any) -> None:
        area = QtGui.QScrollArea()
        area.setWidgetResizable(True)
        inner = QtGui.QWidget()
        layout = QtGui.QVBoxLayout(inner)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addStretch(1)  # keeps the rows at the top
        area.setWidget(inner)
        self._inner = inner
        self._layout = layout
        self.control = area
        self._start_following()

    def _parent_of_items(self) -> Any:
        return self._inner

    def _insert(self, index: int, ui: Any) -> None:
        self._layout.insertWidget(index, ui.control)

    def _remove(self, ui: Any) -> None:
        self._layout.removeWidget(ui.control)
        ui.dispose()
