"""A batch of 50 tasks in an activity view: one row each, one bar for all.

A TraitsUI application, in the style of a photo tool that processes a
folder: 50 "photos" are processed on four worker threads, each through
``submit_steps`` (load, then one step per tile, then save), and all of
them land in a ``FutureGroup``.  ``offload.ui.ActivityView`` shows one
row per task (its name, state, a bar with its percentage and message, the
time it has run, a Cancel button) and one bar for the whole batch, fed by
the group.  Two photos are corrupt: their tasks fail, and their rows say
why.  *Cancel all* stops what is left; *Clear finished* tidies the list.

Needs ``pip install 'offload[traitsui,pyside6]'`` (or another toolkit).  Run it
with ``python examples/batch_activity.py``.
"""

from __future__ import annotations

import hashlib
import zlib

from offload.api import FutureGroup, IStepsReporter, TraitsExecutor, submit_steps
from offload.ui import ActivityView

#: Photos in the batch, and the ones that cannot be read.
PHOTOS = [f"photo_{index:02d}.jpg" for index in range(1, 51)]
CORRUPT = {"photo_13.jpg", "photo_37.jpg"}

#: Tiles per photo (one step each), and the work in each tile.
TILES = 16
TILE_ROUNDS = 3_000


def process_photo(name: str, tiles: int, rounds: int, reporter: IStepsReporter) -> int:
    """Load, filter tile by tile, and save one photo; return its checksum.

    Runs in the background.  Work is counted in tiles: ``total`` is
    ``tiles + 2`` (loading and saving count one each).  Each
    ``reporter.step`` raises ``TaskCancelled`` once the task was cancelled.
    """
    reporter.step(f"loading {name}")
    data = hashlib.sha256(name.encode()).digest() * 256
    if name in CORRUPT:
        raise ValueError(f"{name} is corrupt: not a JPEG file")
    for tile in range(1, tiles + 1):
        reporter.step(f"filtering tile {tile} of {tiles}")
        for _ in range(rounds):  # the "filter": real work, on the worker
            data = hashlib.sha256(data).digest() * 256
    reporter.step(f"saving {name}")
    checksum = zlib.crc32(data)
    reporter.stop(f"saved, checksum {checksum:08x}")
    return checksum


def start_batch(
    executor: TraitsExecutor, photos: list[str], tiles: int = TILES, rounds: int = TILE_ROUNDS
) -> FutureGroup:
    """Submit one task per photo; return the group of their futures.

    Main thread.  Each task's first message names it: the activity view
    shows it as the row's name.
    """
    return FutureGroup(
        futures=[
            submit_steps(executor, tiles + 2, name, process_photo, name, tiles, rounds)
            for name in photos
        ]
    )


def main() -> None:
    executor = TraitsExecutor(max_workers=4)
    try:
        view = ActivityView(group=start_batch(executor, PHOTOS), title="Processing 50 photos")
        view.configure_traits()
    finally:
        executor.shutdown()


if __name__ == "__main__":
    main()
