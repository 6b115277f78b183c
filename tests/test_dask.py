"""DaskContext: what only a cluster can do wrong.

The shared behaviour suites run on an embedded LocalCluster through
conftest's matrix.  Here: a real cluster started as separate processes on
loopback (``dask scheduler`` and two ``dask worker``), one worker killed
mid-task, a scheduler that is not there, and which cluster ``close()``
stops.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

import pytest

pytest.importorskip("distributed")

import dask_task_functions as dtf  # noqa: E402
import task_functions as tf  # noqa: E402
from conftest import wait_done, wait_file  # noqa: E402
from dask_cluster import Cluster  # noqa: E402
from offload.api import (  # noqa: E402
    COMPLETED,
    FAILED,
    DaskContext,
    TraitsExecutor,
    submit_call,
    submit_progress,
)

pytestmark = pytest.mark.dask



@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(str(tmp_path))
    yield cluster
    cluster.stop()


def test_a_real_cluster_runs_tasks_and_survives_a_killed_worker(
    cluster, offload_assistant, tmp_path
):
    assistant = offload_assistant
    context = DaskContext(address=cluster.address, timeout=30)
    try:
        client = context.client
        client.wait_for_workers(2, timeout=60)
        executor = TraitsExecutor(context=context, event_loop=assistant.event_loop)
        try:
            seen = []
            counted = submit_progress(executor, dtf.count_messages, 500)
            counted.observe(lambda event: seen.append(event.new), "progress")
            wait_done(assistant, counted, timeout=30)
            assert counted.state == COMPLETED and seen == list(range(500))

            pid_file, release = str(tmp_path / "pid"), str(tmp_path / "release")
            doomed = submit_call(executor, dtf.pid_then_wait, pid_file, release)
            wait_file(assistant, pid_file, timeout=30)
            with open(pid_file) as file:
                victim = int(file.read())
            assert victim in {worker.pid for worker in cluster.workers}
            os.kill(victim, signal.SIGKILL)
            # Two legal outcomes.  The client saw the task start: it FAILS,
            # saying the worker was lost.  The worker died before its
            # "started" message left it: Dask re-runs the task on the other
            # worker, where it completes once released.
            deadline = time.monotonic() + 30
            while not doomed.done and _read_pid(pid_file) in (None, victim):
                assert time.monotonic() < deadline, "neither failed nor re-run"
                assistant.exercise_event_loop()
            # Released either way: once the future has FAILED, Dask may
            # still run the task again on the surviving worker (its
            # cancelled flag set, its result ignored), and this task does
            # not look at the flag; left waiting, it would hold the only
            # thread of that worker for 30 s.
            tf.touch(release)
            wait_done(assistant, doomed, timeout=30)
            if doomed.state == FAILED:
                assert "worker" in doomed.exception[1] and "lost" in doomed.exception[1]
            else:
                assert doomed.state == COMPLETED
                assert doomed.result != victim

            # The surviving worker still runs tasks.
            after = submit_call(executor, abs, -5)
            wait_done(assistant, after, timeout=30)
            assert after.result == 5
        finally:
            executor.shutdown(timeout=30)
    finally:
        context.close()
    # close() leaves a user's cluster running.
    assert cluster.processes[0].poll() is None
    import distributed

    with distributed.Client(cluster.address, timeout=30, set_as_default=False) as client:
        assert client.scheduler_info()["address"] == cluster.address
    # The cluster stops on SIGTERM, the worker that ran tasks included:
    # none of its processes has to be killed (the session's shared cluster
    # stops the same way).
    assert cluster.stop() == []


def _read_pid(path: str) -> int | None:
    try:
        with open(path) as file:
            return int(file.read())
    except (OSError, ValueError):
        return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_scheduler_is_a_clear_error_within_the_timeout():
    address = f"tcp://127.0.0.1:{_free_port()}"
    began = time.monotonic()
    with pytest.raises((ConnectionError, OSError)) as caught:
        DaskContext(address=address, timeout=2)
    assert time.monotonic() - began < 15
    assert address.split("//")[1] in str(caught.value) or "scheduler" in str(caught.value)


def test_address_and_client_together_is_a_type_error():
    with pytest.raises(TypeError, match="address or a client"):
        DaskContext("tcp://127.0.0.1:1", client=object())


def test_a_client_that_is_not_a_client_is_a_type_error():
    with pytest.raises(TypeError, match="distributed.Client"):
        DaskContext(client="tcp://127.0.0.1:1")


def test_close_stops_the_embedded_cluster_and_refuses_use():
    context = DaskContext(n_workers=1, processes=False, in_process=True)
    cluster = context._cluster
    context.close()
    assert context.closed
    assert cluster.status.name == "closed"
    with pytest.raises(RuntimeError, match="closed"):
        context.event()
    context.close()  # idempotent


def test_close_kills_the_workers_of_a_cluster_that_will_not_close(caplog):
    # What a 2 x 100,000-task stress run met: the cluster's close timed
    # out, raised, and left its worker processes running.
    context = DaskContext(n_workers=1, processes=True, timeout=30, in_process=True)
    cluster = context._cluster
    (pid,) = [nanny.pid for nanny in cluster.workers.values()]
    real_close = cluster.close
    calls = []

    def close_that_times_out(timeout=None):
        calls.append(timeout)
        if len(calls) == 1:
            raise TimeoutError("simulated: workers did not leave in time")
        return real_close(timeout=timeout)

    cluster.close = close_that_times_out
    context.close()
    assert context.closed
    assert len(calls) == 2
    assert cluster.status.name == "closed"
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
    assert "killed the embedded Dask cluster's worker processes" in caplog.text


def test_a_cluster_busy_at_close_gets_time_to_finish_closing(caplog):
    # What a 2 x 100,000-task stress run met: closing right after the second
    # batch, the scheduler was still digesting 100,000 released tasks; the
    # close timed out, the workers it had already retired were not killed
    # (their pids were read after the close forgot them), and a second
    # close, as short as the first, left the cluster and its thread running.
    context = DaskContext(n_workers=1, processes=True, timeout=2, in_process=True)
    cluster = context._cluster
    (pid,) = [nanny.pid for nanny in cluster.workers.values()]
    # Keep the cluster's event loop (scheduler included) busy until the
    # cluster's close has timed out (after the cancel pusher's and the
    # client's timeouts, 2 s each), and half a second more: the loop is
    # still busy while offload kills the workers, as it was in that run.
    timed_out = threading.Event()
    handler = _OnMessage("the Dask cluster did not close within", timed_out)
    logging.getLogger("offload").addHandler(handler)
    cluster.loop.add_callback(lambda: timed_out.wait(10) and time.sleep(0.5))
    start = time.monotonic()
    try:
        context.close()
    finally:
        logging.getLogger("offload").removeHandler(handler)
    took = time.monotonic() - start
    assert cluster.status.name == "closed", f"cluster still {cluster.status.name}"
    assert took < 2 + 2 + 30 + 10
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
    assert "the Dask cluster did not close within 2" in caplog.text
    assert f"killed the embedded Dask cluster's worker processes [{pid}]" in caplog.text


class _OnMessage(logging.Handler):
    """Sets ``event`` when a record's message contains ``text``."""

    def __init__(self, text, event):
        super().__init__()
        self.text, self.event = text, event

    def emit(self, record):
        if self.text in record.getMessage():
            self.event.set()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie until its parent reaps it counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_embedded_cluster_tolerates_a_busy_scheduler():
    # Twice in 100,000-task stress runs, Dask's 30 s TCP timeout dropped the
    # client's connection to the in-process scheduler (ETIMEDOUT while it
    # digested the tasks), and every task FAILED.
    import dask

    with DaskContext(n_workers=1, processes=True, timeout=30, in_process=True) as context:
        comm_socket = context.client.scheduler_comm.comm.stream.socket
        user_timeout = comm_socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
        assert user_timeout == 300_000
        (worker_setting,) = context.client.run(
            lambda: __import__("dask").config.get("distributed.comm.timeouts.tcp")
        ).values()
        assert worker_setting == "300s"
    # Only for the embedded cluster, and not over the user's own setting.
    assert dask.config.get("distributed.comm.timeouts.tcp") == "30s"
    with dask.config.set({"distributed.comm.timeouts.tcp": "45s"}):
        with DaskContext(n_workers=1, processes=True, timeout=30, in_process=True) as context:
            comm_socket = context.client.scheduler_comm.comm.stream.socket
            assert comm_socket.getsockopt(
                socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 45_000


def test_the_embedded_cluster_keeps_few_message_logs():
    # Dask keeps the last 1,000 message batches of each connection for its
    # developers; with the scheduler in the application's process, a burst
    # of tasks stayed there as those batches (2.2 KB a task after 5,000).
    import dask

    with DaskContext(n_workers=1, processes=True, timeout=30, in_process=True) as context:
        scheduler = context._cluster.scheduler
        assert scheduler.transition_log.maxlen == 10
        assert context.client.scheduler_comm.recent_message_log.maxlen == 10
        (worker_setting,) = context.client.run(
            lambda: __import__("dask").config.get("distributed.admin.low-level-log-length")
        ).values()
        assert worker_setting == 10
    assert dask.config.get("distributed.admin.low-level-log-length") == 1000
    with dask.config.set({"distributed.admin.low-level-log-length": 500}):
        with DaskContext(n_workers=1, processes=False, timeout=30, in_process=True) as context:
            assert context._cluster.scheduler.transition_log.maxlen == 500


def test_the_client_of_an_address_keeps_few_message_logs(shared_dask_cluster):
    # Its logs held a burst's messages in the application's process:
    # 20,000 tasks left +165 MB resident with 1,000 batches, +68 MB with 10.
    import dask

    with DaskContext(shared_dask_cluster, timeout=30) as context:
        assert context.client.scheduler_comm.recent_message_log.maxlen == 10
    assert dask.config.get("distributed.admin.low-level-log-length") == 1000
    with dask.config.set({"distributed.admin.low-level-log-length": 500}):
        with DaskContext(shared_dask_cluster, timeout=30) as context:
            assert context.client.scheduler_comm.recent_message_log.maxlen == 500


def test_a_closed_embedded_cluster_leaves_no_scheduler_alive(offload_assistant):
    # distributed.core._expects_comm's unbounded cache held the closed
    # scheduler's handlers, and through them the scheduler, its workers'
    # states and a task of the last run, for the life of the process.
    import gc
    import weakref

    with DaskContext(n_workers=1, processes=False, timeout=30, in_process=True) as context:
        executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
        try:
            future = submit_call(executor, tf.square, 3)
            wait_done(offload_assistant, future, timeout=60)
            assert future.result == 9
        finally:
            executor.shutdown(timeout=30)
        scheduler = weakref.ref(context._cluster.scheduler)
    del context, executor, future
    gc.collect()
    assert scheduler() is None


def _run_a_burst_of_40(offload_assistant, executor):
    """40 calls, all waited for and checked: a burst when BURST is 20."""
    futures = [submit_call(executor, tf.square, n) for n in range(40)]
    for future in futures:
        wait_done(offload_assistant, future, timeout=60)
    assert [f.result for f in futures] == [n * n for n in range(40)]


@pytest.mark.parametrize("in_process", [False, True], ids=["helper", "in-process"])
@pytest.mark.parametrize("max_workers", [None, 2], ids=["uncapped", "capped"])
def test_the_end_of_a_burst_empties_the_key_split_cache(
    monkeypatch, offload_assistant, max_workers, in_process
):
    # Dask's key_split caches the last 100,000 keys; offload's are unique
    # per task, so a burst's keys stayed cached, pinning its memory.  With
    # max_workers, at most that many tasks are pending at once: the cache
    # used to be emptied only after BURST pending at once, so a capped pool
    # never emptied it however many tasks it ran.
    from dask.utils import key_split

    from offload._backends.dask import pool as dask_pool

    monkeypatch.setattr(dask_pool, "BURST", 20, raising=False)
    with DaskContext(n_workers=1, processes=False, timeout=30, in_process=in_process
                     ) as context:
        if in_process:
            def cache_size():
                return key_split.cache_info().currsize
        else:
            context._helper.call(dtf.set_burst, 20)

            def cache_size():
                return context._helper.call(dtf.key_split_cache_size)
        executor = TraitsExecutor(
            context=context, event_loop=offload_assistant.event_loop, max_workers=max_workers
        )
        try:
            _run_a_burst_of_40(offload_assistant, executor)
            # The burst's 40 keys went through the cache; its end (in Dask's
            # callback thread) empties it.
            offload_assistant.run_until(
                executor, "state",
                lambda _: not executor._worker_pool._pending and cache_size() < 40,
                timeout=30,
            )
        finally:
            executor.shutdown(timeout=30)


@pytest.mark.parametrize("in_process", [False, True], ids=["helper", "in-process"])
def test_the_end_of_a_burst_trims_the_embedded_schedulers_span_metadata(
    monkeypatch, offload_assistant, in_process
):
    # Every client.submit appends {"type": "Future"} to the default span's
    # metadata, which Dask never trims: three blocks per task, for the
    # life of the embedded scheduler.
    from distributed.spans import Span

    if not hasattr(Span, "metadata"):
        pytest.skip("this distributed keeps no metadata on its spans: nothing to trim")
    from offload._backends.dask import pool as dask_pool

    monkeypatch.setattr(dask_pool, "BURST", 20, raising=False)
    with DaskContext(n_workers=1, processes=False, timeout=30, in_process=in_process
                     ) as context:
        if in_process:
            def collections():
                return dtf.span_collections(context.client, context._cluster)
        else:
            context._helper.call(dtf.set_burst, 20)

            def collections():
                return context._helper.call(dtf.span_collections)
        executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
        try:
            _run_a_burst_of_40(offload_assistant, executor)
            offload_assistant.run_until(
                executor, "state",
                lambda _: not executor._worker_pool._pending and collections() < 5,
                timeout=30,
            )
            # Trimmed, not emptied: the distinct entry stays.
            assert collections() >= 1
        finally:
            executor.shutdown(timeout=30)


def test_tls_settings_pass_through_to_the_embedded_cluster(offload_assistant):
    pytest.importorskip("cryptography")
    from distributed import Security

    security = Security.temporary()
    with DaskContext(security=security, n_workers=1, processes=False) as context:
        assert context.client.scheduler.address.startswith("tls://")
        executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
        seen = []
        future = submit_progress(executor, dtf.count_messages, 50)
        future.observe(lambda event: seen.append(event.new), "progress")
        wait_done(offload_assistant, future, timeout=30)
        executor.shutdown(timeout=30)
    assert future.result == 50 and seen == list(range(50))


def test_a_users_client_is_used_and_left_open(cluster, offload_assistant):
    import distributed

    with distributed.Client(cluster.address, timeout=30, set_as_default=False) as client:
        context = DaskContext(client=client)
        assert context.client is client
        executor = TraitsExecutor(context=context, event_loop=offload_assistant.event_loop)
        future = submit_call(executor, abs, -3)
        wait_done(offload_assistant, future, timeout=30)
        executor.shutdown(timeout=30)
        context.close()
        assert future.result == 3
        assert client.status == "running"
        assert client.submit(abs, -4).result(timeout=30) == 4
