"""Turn the JSON lines of the benchmark scripts into a Markdown table.

Usage: ``python benchmarks/summarize.py FILE.jsonl [...]`` (``-`` reads
standard input), for instance::

    python benchmarks/calls.py > calls.jsonl
    python benchmarks/summarize.py calls.jsonl

One row per measured record: median, the baseline's median in the same run,
their ratio, the target and whether it was met.  ``gui_stall`` and
``dask_channels`` records get their own columns, in their own tables.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any


def records(paths: Iterable[str]) -> Iterator[dict[str, Any]]:
    for path in paths:
        stream = sys.stdin if path == "-" else open(path)  # noqa: SIM115
        with stream:
            for line in stream:
                line = line.strip()
                if line.startswith("{"):
                    yield json.loads(line)


def number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "met" if value else "**missed**"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}"
    return str(value)


def config_text(config: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in config.items() if key != "what")


def table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(paths: list[str]) -> None:
    measured, stalls, channels, skipped = [], [], [], []
    for record in records(paths or ["-"]):
        if "skipped" in record:
            skipped.append(f"- {record.get('benchmark')} ({record.get('context', '')}): "
                           f"skipped: {record['skipped']}")
        elif record.get("benchmark") == "gui_stall":
            stalls.append([
                record["context"], number(record["max_stall_ms"]),
                number(record["median_max_stall_ms"]), number(record["baseline_max_stall_ms"]),
                number(record["last_message_late_ms_median"]),
                number(float(record["messages_per_second"])),
                number(record["target_ms"]), number(record["meets_target"]),
                number(record["environment"].get("load_average_1min")),
            ])
        elif record.get("benchmark") == "dask_channels":
            if "median" in record:
                channels.append([
                    record["channel"], number(record["messages"]), number(record["median"]),
                    number(record["ratio_to_log_event"]),
                    number(record.get("latency_ms_median")),
                    number(record.get("load_average_1min")),
                ])
        elif "median" in record:
            target = record.get("target")
            if target is None and record.get("target_ratio") is not None:
                target = f"ratio ≥ {record['target_ratio']}"
            measured.append([
                record["benchmark"], record.get("context", ""), config_text(record["config"]),
                f"{number(record['median'])} {record['unit']}",
                number(record.get("baseline_median")), number(record.get("ratio")),
                number(target), number(record.get("met")),
                number(record.get("load_average_1min")),
            ])
    if measured:
        print(table(measured, ["benchmark", "context", "configuration", "offload (median)",
                               "baseline (median)", "ratio", "target", "", "load"]))
    if stalls:
        print()
        print(table(stalls, ["context", "longest stall ms", "median of floods' longest",
                             "idle loop's longest", "last message late ms", "msgs/s",
                             "target ms", "", "load"]))
    if channels:
        print()
        print(table(channels, ["channel", "messages", "msgs/s (median)", "× log_event",
                               "latency ms (median)", "load"]))
    if skipped:
        print()
        print("\n".join(skipped))


if __name__ == "__main__":
    main(sys.argv[1:])
