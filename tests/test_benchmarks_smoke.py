"""The benchmark scripts run and print valid JSON lines.

Each script runs as a subprocess with ``--quick --repeat 1`` (tiny sizes:
this checks that it works, never how fast; no figure is asserted).  The
thread context runs by default; process, Dask and GUI runs carry their
markers; the slower of those (every script on every context) are also
``stress``, left out unless ``-m`` selects them, so that the default run of
this file stays within about 40 s on two cores.  They are ``tooling``:
nox runs them once, in the ``full`` session, not on every Python.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.tooling

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

#: Scripts taking ``--context``.
SCRIPTS = ["calls", "progress", "iteration", "latency", "memory", "group"]

#: Longest one quick run may take (s); a hang fails the test, not CI.
RUN_TIMEOUT = 50

#: Keys every measured record carries.
RECORD_KEYS = {"benchmark", "context", "config", "unit", "median", "runs", "met"}


def run_script(
    name: str, *options: str, env: dict[str, str] | None = None, timeout: float = RUN_TIMEOUT
) -> list[dict]:
    """Run ``benchmarks/NAME.py --quick --repeat 1 OPTIONS``; its JSON lines."""
    command = [sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick", "--repeat", "1",
               *options]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=BENCHMARKS.parent,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines, f"{name} printed nothing:\n{done.stderr[-3000:]}"
    records = [json.loads(line) for line in lines]
    for record in records:
        assert isinstance(record, dict)
        assert "skipped" not in record, f"{name} skipped: {record['skipped']}"
    return records


def check_records(name: str, records: list[dict], context: str) -> None:
    for record in records:
        missing = RECORD_KEYS - set(record)
        assert not missing, f"{name}: a record lacks {sorted(missing)}: {record}"
        assert record["context"] == context
        assert record["quick"] is True
        assert len(record["runs"]) == 1
        assert isinstance(record["median"], (int, float))


#: Per context, the scripts run by default; the others run with ``-m stress``
#: (a process or Dask run pays for starting workers or a cluster, and this
#: file must stay within ~40 s).
DEFAULT_SCRIPTS = {
    "thread": set(SCRIPTS),
    "process": {"calls", "progress", "latency"},
    "dask": {"calls", "latency"},
}


def _with_marks(context: str) -> list[Any]:
    marks = {"thread": [], "process": [pytest.mark.process], "dask": [pytest.mark.dask]}
    return [
        pytest.param(
            script, context, id=f"{script}-{context}",
            marks=marks[context] + ([] if script in DEFAULT_SCRIPTS[context]
                                    else [pytest.mark.stress]),
        )
        for script in SCRIPTS
    ]


@pytest.mark.parametrize(
    ("script", "context"),
    _with_marks("thread") + _with_marks("process") + _with_marks("dask"),
)
def test_script_prints_json(script: str, context: str) -> None:
    if context == "dask":
        pytest.importorskip("distributed")
    records = run_script(script, "--context", context)
    check_records(script, records, context)
    if script == "memory":
        assert {r["benchmark"] for r in records} == {"memory", "submit_cost"}
    if context == "dask" and script == "latency":
        assert any(r["benchmark"] == "startup" for r in records)


@pytest.mark.gui
@pytest.mark.parametrize(
    "context",
    ["thread", pytest.param("process", marks=[pytest.mark.process, pytest.mark.stress])],
)
def test_gui_stall_prints_json(context: str) -> None:
    pytest.importorskip("pyface.qt")
    (record,) = run_script("gui_stall", "--context", context,
                           env={"QT_QPA_PLATFORM": "offscreen"})
    assert "skipped" not in record
    assert record["benchmark"] == "gui_stall"
    for key in ("max_stall_ms", "baseline_max_stall_ms", "last_message_late_ms_median"):
        assert isinstance(record[key], (int, float))


@pytest.mark.process
def test_startup_prints_json() -> None:
    records = run_script("startup", "--methods", "fork")
    assert [r["config"]["measure"] for r in records] == ["cold", "warm", "kill"]
    assert records[-1]["error"].startswith("concurrent.futures.process.BrokenProcessPool")


@pytest.mark.process
def test_control_prints_json() -> None:
    records = run_script("control")
    assert [r["config"]["measure"] for r in records] == [
        "force_cancel", "force_cancel_sigterm_ignored", "next_start", "timeout_late",
        "timeout_late_thread",
    ]
    assert all(RECORD_KEYS <= set(r) for r in records)


@pytest.mark.dask
@pytest.mark.stress
def test_dask_channels_prints_json() -> None:
    pytest.importorskip("distributed")
    records = run_script("dask_channels")
    channels = {r["channel"] for r in records}
    assert {"log_event", "log_event_coalesced", "queue", "offload"} <= channels


@pytest.mark.dask
@pytest.mark.stress
@pytest.mark.timeout(200)
def test_dask_payload_prints_json() -> None:
    pytest.importorskip("distributed")
    pytest.importorskip("numpy")
    records = run_script("dask_payload", timeout=180)
    assert {"raw_submit", "raw_scatter"} <= {r["mode"] for r in records}
    for record in records:
        assert record["total_s"] > 0 and record["sent_mb"] > 0


@pytest.mark.dask
@pytest.mark.process
@pytest.mark.timeout(200)
def test_dask_embedded_prints_json() -> None:
    pytest.importorskip("distributed")
    # Three embedded clusters, each started and closed: ~40 s on two quiet
    # cores, past 50 s on busy ones.
    records = run_script("dask_embedded", timeout=180)
    assert [r["mode"] for r in records] == ["helper", "in_process", "raw"]
    for record in records:
        assert record["rate_median"] > 0 and isinstance(record["rss_kept_mb"], float)


def test_ab_latency_compares_with_a_revision_in_one_process() -> None:
    (record,) = run_script("ab_latency", "--against", "HEAD")
    assert record["benchmark"] == "ab_latency" and record["quick"] is True
    for wait in ("await", "observe"):
        assert record[f"this_{wait}"] > 0 and record[f"against_{wait}"] > 0
        assert record[f"ratio_{wait}"] > 0


def test_ab_calls_compares_bursts_with_a_revision_in_one_process() -> None:
    (record,) = run_script("ab_calls", "--against", "HEAD")
    assert record["benchmark"] == "ab_calls" and record["quick"] is True
    for part in ("submit", "deliver", "wall"):
        assert record[f"this_{part}"] > 0 and record[f"against_{part}"] > 0
        assert record[f"ratio_{part}"] > 0
