"""Iteration items/s delivered on the main thread, in order, none lost.

``submit_iteration`` tasks each iterate over a generator of ``0 .. M-1``; an
observer of the future's ``result_event`` checks, on the asyncio loop's
thread, that every item arrives once and in order.  Same configurations and
figure as ``progress.py``.

Usage: ``python benchmarks/iteration.py [--context thread|process|dask]
[--repeat R] [--quick]``.
"""

from __future__ import annotations

import functools

import _messages
from _harness import run_main

if __name__ == "__main__":
    run_main("iteration", __doc__.splitlines()[0], functools.partial(_messages.main, "iteration"))
