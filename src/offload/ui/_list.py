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


class SubviewsMixin:
    """What both toolkits share: which sub-views to add and remove.

    The toolkit class provides ``_insert(index, ui)`` and ``_remove(ui)``
    and calls :meth:`_start_following` from its ``init``.
    """

    _uis: dict[int, Any]

    def _start_following(self) -> None:
        self._uis = {}
        self.object.observe(self._items_changed, f"{self.name}:items")  # type: ignore[attr-defined]

    def update_editor(self) -> None:
        self._sync()

    def dispose(self) -> None:
        self.object.observe(  # type: ignore[attr-defined]
            self._items_changed, f"{self.name}:items", remove=True  # type: ignore[attr-defined]
        )
        for ui in self._uis.values():
            ui.dispose()
        self._uis = {}
        super().dispose()  # type: ignore[misc]

    def _items_changed(self, event: Any) -> None:
        self._sync()

    def _sync(self) -> None:
        items = self.value  # type: ignore[attr-defined]
        present = {id(item) for item in items}
        for key in [key for key in self._uis if key not in present]:
            self._remove(self._uis.pop(key))
        for index, item in enumerate(items):
            if id(item) not in self._uis:
                ui = item.edit_traits(
                    parent=self._parent_of_items(), kind="subpanel",
                    view=self.factory.view,  # type: ignore[attr-defined]
                )
                self._uis[id(item)] = ui
                self._insert(index, ui)
        self._relayout()

    def _parent_of_items(self) -> Any:
        raise NotImplementedError

    def _insert(self, index: int, ui: Any) -> None:
        raise NotImplementedError

    def _remove(self, ui: Any) -> None:
        raise NotImplementedError

    def _relayout(self) -> None:
        pass
