"""Functions that the Dask tests run on workers (importable by name there)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from task_functions import touch, wait_for_file


def pid_then_wait(pid_file: str, release: str) -> int:
    """Write this worker's pid to ``pid_file``, then wait for ``release``."""
    tmp = pid_file + ".tmp"
    with open(tmp, "w") as file:
        file.write(str(os.getpid()))
    os.replace(tmp, pid_file)
    wait_for_file(release, timeout=30)
    return os.getpid()


def progress_pid_then_wait(pid_file: str, release: str, progress: Any) -> int:
    """Report once, then as ``pid_then_wait``."""
    progress("running")
    return pid_then_wait(pid_file, release)


def unpicklable_result() -> Any:
    return threading.Lock()


class UnpicklableError(Exception):
    def __init__(self) -> None:
        super().__init__("cannot travel")
        self.lock = threading.Lock()


def raise_unpicklable() -> None:
    raise UnpicklableError()


def count_messages(n: int, progress: Any) -> int:
    for i in range(n):
        progress(i)
    return n


def report_then_block(started: str, progress: Any) -> str:
    """Report once, mark ``started``, then check for cancellation by hand."""
    progress(0)
    touch(started)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if progress.cancelled():
            return "saw the cancel"
        time.sleep(0.001)
    return "never cancelled"


# Run in the embedded cluster's helper process, by HelperClient.call --------


def set_burst(client: Any, cluster: Any, burst: int) -> None:
    """Make the helper trim after bursts of ``burst`` tasks."""
    from offload._backends.dask import helper_main

    helper_main.BURST = burst


def key_split_cache_size(client: Any, cluster: Any) -> int:
    from dask.utils import key_split

    return key_split.cache_info().currsize


def span_collections(client: Any, cluster: Any) -> int:
    """Entries in the metadata of the scheduler's spans."""
    spans = cluster.scheduler.extensions["spans"].spans.values()
    return sum(len((span.metadata or {}).get("collections", ())) for span in spans)


def cluster_settings(client: Any, cluster: Any) -> dict[str, Any]:
    """What the helper's cluster and client were started with."""
    import socket

    import dask

    stream = getattr(client.scheduler_comm.comm, "stream", None)  # not in-process
    return {
        "tcp_user_timeout": None if stream is None else stream.socket.getsockopt(
            socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        "transition_log": cluster.scheduler.transition_log.maxlen,
        "client_log": client.scheduler_comm.recent_message_log.maxlen,
        "marker": dask.config.get("offload-test-marker", None),
        "pid": os.getpid(),
    }


def scheduler_task_count(client: Any, cluster: Any) -> int:
    return len(cluster.scheduler.tasks)


def worker_pids(client: Any, cluster: Any) -> list[int]:
    """The pids of the helper cluster's worker processes (its nannies)."""
    return [nanny.pid for nanny in cluster.workers.values()]


def empty_message_logs(client: Any, cluster: Any) -> None:
    """Empty the debug logs of the scheduler's connections."""
    scheduler = cluster.scheduler
    for comms in (scheduler.stream_comms, scheduler.client_comms):
        for comm in comms.values():
            comm.recent_message_log.clear()


def count_result_fetches(client: Any, cluster: Any) -> None:
    """Count, from now on, the helper's ``Future.result`` calls."""
    import distributed

    original = distributed.Future.result
    if getattr(original, "counted", None) is not None:
        original.counted[0] = 0
        return
    counted = [0]

    def result(self: Any, *args: Any, **kwargs: Any) -> Any:
        counted[0] += 1
        return original(self, *args, **kwargs)

    result.counted = counted  # type: ignore[attr-defined]
    distributed.Future.result = result


def result_fetches(client: Any, cluster: Any) -> int:
    import distributed

    return distributed.Future.result.counted[0]
