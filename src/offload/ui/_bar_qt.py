"""Qt side of :class:`offload.ui._bar.ProgressBarEditor`: a ``QProgressBar``."""

from __future__ import annotations

from typing import Any

from pyface.qt import QtCore, QtGui
from traitsui.qt.editor import Editor

from offload.ui._bar_value import RESOLUTION, bar_value


class QtBarEditor(Editor):
    """A ``QProgressBar`` showing ``(fraction, text)``; main thread."""

    def init(self, parent: Any) -> None:
        bar = QtGui.QProgressBar()
        bar.setRange(0, RESOLUTION)
        bar.setTextVisible(True)
        bar.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        bar.setMinimumWidth(160)
        self.control = bar

    def update_editor(self) -> None:
        fraction, text = self.value
        bar = self.control
        if fraction is None:
            bar.setRange(0, 0)  # Qt's busy indicator
        else:
            bar.setRange(0, RESOLUTION)
            bar.setValue(bar_value(fraction))
        bar.setFormat(_literal(text))


def _literal(text: str) -> str:
    """``text`` as a QProgressBar format: no ``%p``, ``%v`` or ``%m`` in it
    may be taken for a placeholder (a zero-width space keeps them apart)."""
    for letter in "pvm":
        text = text.replace("%" + letter, "%\u200b" + letter)
    return text
