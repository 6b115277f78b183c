"""What the Qt and wx progress bars share: the bar's scale."""

from __future__ import annotations

#: Steps of the toolkit's bar between 0 and 1.
RESOLUTION = 1000


def bar_value(fraction: float | None) -> int:
    """The toolkit bar's value for ``fraction`` (0..RESOLUTION)."""
    if fraction is None:
        return 0
    return round(min(max(fraction, 0.0), 1.0) * RESOLUTION)
