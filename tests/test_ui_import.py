"""offload.ui without a GUI: what it refuses, and that offload.api does not load it."""

from __future__ import annotations

import subprocess
import sys

import pytest

import task_functions as tf
from offload.api import submit_call


def test_an_asyncio_executor_is_refused():
    pytest.importorskip("traitsui")
    from offload.api import AsyncioEventLoop, TraitsExecutor
    from offload.ui import run_with_progress

    event_loop = AsyncioEventLoop()
    executor = TraitsExecutor(event_loop=event_loop)
    try:
        future = submit_call(executor, tf.square, 5)
        with pytest.raises(RuntimeError, match="asyncio"):
            run_with_progress(future)
    finally:
        executor.shutdown(timeout=20)
        event_loop.close()


def test_importing_offload_api_imports_no_ui():
    code = "import sys, offload.api; print('offload.ui' in sys.modules, 'traitsui' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr
