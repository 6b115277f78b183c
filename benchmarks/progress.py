"""Progress messages/s delivered on the main thread, in order, none lost.

``submit_progress`` tasks each report ``0 .. M-1``; an observer of the
future's ``progress`` event checks, on the asyncio loop's thread, that every
value arrives once and in order.  The figure is all messages divided by the
time from the first submit to the last message delivered.  Configurations:
one task of 200,000 messages (against the raw baseline) and four tasks of
50,000 in parallel (order checked per task; no baseline).

Usage: ``python benchmarks/progress.py [--context thread|process|dask]
[--repeat R] [--quick]``.
"""

from __future__ import annotations

import functools

import _messages
from _harness import run_main

if __name__ == "__main__":
    run_main("progress", __doc__.splitlines()[0], functools.partial(_messages.main, "progress"))
