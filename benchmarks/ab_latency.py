"""Round trip of this tree against another revision, in one process.

A change worth a few percent of a round trip is lost in this machine's
noise between two runs (its speed changes by half from one minute to the
next), but not between two blocks of samples a few milliseconds apart.  So
this script loads the revision to compare with (``git archive REV
src/offload``, renamed ``offload_ab``) beside the installed ``offload``,
makes one executor of each on one asyncio loop, and alternates blocks of
round trips between them (and a raw one-thread ``ThreadPoolExecutor``).
The JSON line gives each one's median over the blocks, and the median of
the per-block ratios of this tree to the revision: below 1 is faster.

With ``--context process`` each executor has its own
``MultiprocessingContext`` (one worker process each, so both pay the same
hop), and the raw baseline stays the one-thread pool.

Usage: ``python benchmarks/ab_latency.py [--against REV] [--context
thread|process] [--repeat R] [--quick]`` from a git checkout (default: ``HEAD``, which measures the
working tree's uncommitted change); ``R`` × 6 blocks of 200 round trips
each (default 5: 30).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

from _baselines import ThreadBaseline
from _harness import Skip, close_loop, emit, environment, new_loop, run_main, run_until
from latency import offload_sampler

#: The revision's package, under this name.
COPY = "offload_ab"

BLOCK, QUICK_BLOCK = 200, 5
#: Blocks of each per ``--repeat`` (default 5: 30 blocks).
BLOCKS_PER_REPEAT = 6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--against", default="HEAD", help="git revision to compare with")


def load_revision(revision: str, into: str) -> Any:
    """Import ``src/offload`` of ``revision`` as :data:`COPY`."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        archive = subprocess.run(
            ["git", "-C", os.path.dirname(here), "archive", revision, "src/offload"],
            capture_output=True, check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        raise Skip(
            f"cannot read revision {revision!r} of src/offload with git archive "
            f"(run from a git checkout): {error} {detail.decode(errors='replace').strip()}"
        ) from None
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
            tar.extractall(into, filter="data")
        else:  # pragma: no cover - our own archive
            tar.extractall(into)
    package = os.path.join(into, COPY)
    shutil.move(os.path.join(into, "src", "offload"), package)
    for folder, _, files in os.walk(package):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as file:
                    text = file.read()
                with open(path, "w", encoding="utf-8") as file:
                    file.write(_renamed(text))
    sys.path.insert(0, into)
    return importlib.import_module(COPY + ".api")


#: ``offload`` as the package's name in one of its import statements.
_NAME = re.compile(r"\boffload(?=[.\s])")


def _renamed(text: str) -> str:
    """``text`` with its imports of ``offload`` made imports of :data:`COPY`."""
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.lstrip().startswith(("from ", "import ")):
            lines[index] = _NAME.sub(COPY, line)
    return "".join(lines)


#: Contexts made by executor_and_samplers, closed at the end.
_CONTEXTS: list[Any] = []


def executor_and_samplers(
    api: Any, loop: asyncio.AbstractEventLoop, context_name: str = "thread"
) -> tuple[Any, dict]:
    """An executor of ``api`` on ``loop``, and its two samplers."""
    extra: dict[str, Any] = {}
    if context_name == "process":
        # By module: offload.api's lazy names are strings the copy keeps.
        package = api.__name__.rpartition(".")[0]
        context_module = importlib.import_module(package + "._backends.process.context")
        context = context_module.MultiprocessingContext()
        _CONTEXTS.append(context)
        extra = {"context": context, "max_workers": 1}
    executor = api.TraitsExecutor(
        event_loop=api.AsyncioEventLoop(event_loop=loop), **extra
    )
    return executor, {
        wait: offload_sampler(executor, loop, wait, api.submit_call)
        for wait in ("await", "observe")
    }


def main(args: argparse.Namespace) -> None:
    import offload.api

    block = QUICK_BLOCK if args.quick else BLOCK
    blocks = 2 if args.quick else BLOCKS_PER_REPEAT * args.repeat
    with tempfile.TemporaryDirectory() as scratch:
        other = load_revision(args.against, scratch)
        loop = new_loop()
        raw = ThreadBaseline(loop, max_workers=1)
        try:
            this_executor, this = executor_and_samplers(offload.api, loop, args.context)
            that_executor, that = executor_and_samplers(other, loop, args.context)
            samplers: dict[str, Callable[[], Awaitable[float]]] = {"raw": raw.round_trip}
            for wait in ("await", "observe"):
                samplers[f"this_{wait}"] = this[wait]
                samplers[f"that_{wait}"] = that[wait]
            medians = run_until(loop, asyncio.ensure_future(
                _interleave(samplers, blocks, block), loop=loop))
            for executor in (this_executor, that_executor):
                executor.shutdown(timeout=60)
            while _CONTEXTS:
                _CONTEXTS.pop().close()
        finally:
            raw.close()
            close_loop(loop)
            sys.path.remove(scratch)
    record: dict[str, Any] = {
        "benchmark": "ab_latency",
        "against": args.against,
        "context": args.context,
        "unit": "µs (median round trip)",
        "blocks": blocks,
        "round_trips_per_block": block,
        "raw_one_thread": statistics.median(medians["raw"]),
        "quick": args.quick,
    }
    for wait in ("await", "observe"):
        record[f"this_{wait}"] = statistics.median(medians[f"this_{wait}"])
        record[f"against_{wait}"] = statistics.median(medians[f"that_{wait}"])
        record[f"ratio_{wait}"] = statistics.median(
            a / b for a, b in zip(medians[f"this_{wait}"], medians[f"that_{wait}"], strict=True)
        )
    emit({**record, **environment()})


async def _interleave(
    samplers: dict[str, Callable[[], Awaitable[float]]], blocks: int, block: int
) -> dict[str, list[float]]:
    """Median of each block, in µs; the order of the samplers alternates."""
    names = list(samplers)
    for sampler in samplers.values():  # warm up: threads started, caches primed
        for _ in range(block):
            await sampler()
    medians: dict[str, list[float]] = {name: [] for name in names}
    for index in range(blocks):
        for name in names if index % 2 else names[::-1]:
            gc.collect()
            values = [await samplers[name]() for _ in range(block)]
            medians[name].append(1e6 * statistics.median(values))
    return medians


if __name__ == "__main__":
    run_main("ab_latency", __doc__.splitlines()[0], main, add_arguments)
