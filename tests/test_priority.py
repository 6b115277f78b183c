"""executor.options(priority=...): higher priorities start first, equal
priorities first in, first out; on every context."""

from __future__ import annotations

import pytest

import control_tasks as ct
from conftest import wait_done, wait_file
from offload.api import COMPLETED, TraitsExecutor, submit_call


@pytest.fixture
def one_worker(context, assistant):
    executor = TraitsExecutor(context=context, event_loop=assistant.event_loop, max_workers=1)
    yield executor
    executor.shutdown(timeout=20)


def test_higher_priorities_start_first(one_worker, assistant, tmp_path):
    gate, started, order = (str(tmp_path / name) for name in ("gate", "started", "order"))
    blocker = submit_call(one_worker, ct.record, started, "blocker")
    held = submit_call(one_worker, ct.wait_for_file, gate)
    wait_file(assistant, started)
    plan = [("a", 0), ("b", -1), ("c", 5), ("d", 0), ("e", 5), ("f", 1), ("g", -1), ("h", 0)]
    futures = []
    for label, priority in plan:
        target = one_worker if priority == 0 else one_worker.options(priority=priority)
        futures.append(submit_call(target, ct.record, order, label))
    open(gate, "w").close()
    for future in [blocker, held, *futures]:
        wait_done(assistant, future)
    assert all(f.state == COMPLETED for f in futures)
    with open(order) as file:
        assert file.read().split() == ["c", "e", "f", "a", "d", "h", "b", "g"]
