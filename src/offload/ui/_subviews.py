"""What the Qt and wx sub-view lists share: which sub-views to add and remove."""

from __future__ import annotations

from typing import Any


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
