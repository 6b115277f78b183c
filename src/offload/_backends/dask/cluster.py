"""The Dask cluster's life: start, connect, close, and memory clean-up.

What an embedded ``LocalCluster`` and the clients of a cluster need,
wherever they run: in the application (``DaskContext(in_process=True)``, or
a cluster given by ``address``) or in the embedded cluster's helper process
(:mod:`.helper_main`).  Both :mod:`.context` and :mod:`.helper_main` import
this module, which imports no other module of offload's Dask backend.

Dask is imported inside the functions, when they first run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import weakref
from typing import Any

logger = logging.getLogger("offload.contexts.dask")


def import_distributed() -> Any:
    """The ``distributed`` package, or an error that says how to install it.

    Imported on first use, so that ``offload.api`` can name ``DaskContext``
    without importing Dask (about a second).
    """
    try:
        import distributed
    except ImportError as error:
        raise ImportError(
            "DaskContext needs dask.distributed, which is not installed: "
            "pip install 'offload[dask]'"
        ) from error
    return distributed


#: Tasks handed to Dask since the key cache was last emptied, from which a
#: pool that has nothing pending any more empties it (see ``DaskWorkerPool``).
BURST = 1_000


def forget_task_keys() -> None:
    """Empty the cache of ``dask.utils.key_split`` in this process.

    The scheduler and the client call it on every task key, and it keeps
    the last 100,000 keys it saw with their results.  offload's keys are
    unique per task, so after a burst the cache holds the burst's keys for
    good (~200 B a task), allocated all through the burst's memory, which
    CPython then cannot give back.
    """
    from dask.utils import key_split

    cache_clear = getattr(key_split, "cache_clear", None)
    if cache_clear is not None:
        cache_clear()

def forget_closed_servers() -> None:
    """Let the embedded cluster's closed scheduler (and in-process workers)
    be garbage.

    ``distributed.core._expects_comm`` caches, without limit, whether each
    handler a server dispatched to takes a ``comm`` first; the handlers are
    bound methods, so every scheduler and worker that ever ran in this
    process stayed alive, with the workers and tasks it last knew.
    ``distributed.utils.has_keyword`` keeps up to 1,000 such answers too.
    Emptying both costs one signature inspection per handler the next time
    a live server dispatches to it.

    ``_expects_comm`` is private, and Dask has no public way to empty its
    cache or to keep a server out of it; only ``DaskContext(in_process=True)``
    needs this (the default helper process ends with its cluster, cache and
    all).  A Dask without either cache is left alone, and
    ``tests/test_public_apis.py`` (``test_private_names_still_exist``) says
    when the name has gone.
    """
    for module_name, function_name in (
        ("distributed.core", "_expects_comm"),
        ("distributed.utils", "has_keyword"),
    ):
        module = sys.modules.get(module_name)
        cache_clear = getattr(getattr(module, function_name, None), "cache_clear", None)
        if cache_clear is not None:
            cache_clear()


def merge_span_metadata(scheduler: Any) -> None:
    """Drop repeats from the metadata of the scheduler's spans.

    Every ``client.submit`` appends ``{"type": "Future"}`` to the
    ``collections`` metadata of the span its task joins, the default span
    unless the user opened one, and Dask never trims it: three blocks per
    task for the scheduler's lifetime (100,000 tasks: ~17 MB), in the
    application's process for the embedded cluster, and scattered through
    the memory of the burst that made them, which they keep CPython from
    giving back.  Each distinct entry is kept once, in order, in the list
    that ``Span.metadata`` (public) returns, which is the span's own.  Runs
    on the scheduler's event loop; a Dask whose spans look different is
    left alone.
    """
    try:
        extension = scheduler.extensions.get("spans")
        spans = list(getattr(extension, "spans", {}).values())
    except Exception:  # noqa: BLE001 - Dask internals; never break its loop
        return
    for span in spans:
        metadata = getattr(span, "metadata", None)
        collections = metadata.get("collections") if isinstance(metadata, dict) else None
        if not isinstance(collections, list) or len(collections) < 2:
            continue
        unique: list[Any] = []
        for item in collections:
            if item not in unique:
                unique.append(item)
        if len(unique) < len(collections):
            collections[:] = unique


def connect(address: str, security: Any, timeout: float) -> Any:
    """A client of the scheduler at ``address``, or a clear error."""
    deadline = time.monotonic() + timeout
    try:
        _probe(address, deadline)
        with _client_config():
            return import_distributed().Client(
                address, security=security, timeout=max(0.1, deadline - time.monotonic()),
                set_as_default=False,
            )
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(
            f"could not connect to the Dask scheduler at {address!r} within "
            f"{timeout} s ({type(exc).__name__}: {exc}); check that the "
            "scheduler runs and the address and security settings are right, "
            "or give DaskContext a longer timeout="
        ) from exc


def _probe(address: str, deadline: float) -> None:
    """Wait until a TCP connection to ``address`` succeeds, or raise OSError.

    A ``distributed.Client`` that fails to connect leaves its event-loop
    thread running, so an absent scheduler is found out here first.  Only
    ``tcp://`` and ``tls://`` addresses are probed.
    """
    scheme, _, location = address.rpartition("://")
    if scheme not in ("tcp", "tls", ""):
        return
    host, _, port = location.rpartition(":")
    if not port.isdigit():
        return  # let Dask parse (and explain) what this is
    host = host.strip("[]") or "127.0.0.1"
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def close_within(closable: Any, timeout: float, what: str) -> bool:
    """``closable.close(timeout=timeout)``; False, logged, if it failed."""
    try:
        closable.close(timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - close the rest regardless
        logger.warning(
            "offload: the Dask %s did not close within %s s (%s: %s)",
            what, timeout, type(exc).__name__, exc,
        )
        return False
    return True


#: Seconds a close of the embedded cluster that timed out may still take,
#: once its workers are killed, before offload gives up on it: a scheduler
#: (in this process) that was sent 100,000 tasks' releases just before
#: must digest them before it can stop, ~20 s on a busy 2-core machine.
CLUSTER_CLOSE_GRACE = 30.0


def close_client(client: Any, timeout: float, what: str = "client") -> bool:
    """Close a client; False, logged, if it did not close within ``timeout``.

    A ``distributed.Client`` is closed with ``close(timeout=None)`` on a
    thread of its own, which the caller waits for up to ``timeout``.
    ``Client.close`` stops the client's event-loop thread (or, for a client
    of an in-process cluster, releases its share of the cluster's loop
    thread, which stops only once the cluster and the client both let it
    go) only when its close has ended *before* its timeout; a close that
    times out goes on in that loop, ends there, and nothing ever stops the
    thread.  Without Dask's timeout, ``close`` returns only once the close
    is done, and then stops the thread itself; :func:`finish_closing`
    waits for a close that took longer.  Other clients (offload's helper
    client) are closed with :func:`close_within`.
    """
    if not isinstance(client, import_distributed().Client):
        return close_within(client, timeout, what)
    closing = threading.Thread(
        target=_close_without_timeout, args=(client, what),
        name="offload-dask-client-close", daemon=True,
    )
    _CLOSING[client] = closing
    closing.start()
    closing.join(timeout)
    if closing.is_alive():
        logger.warning(
            "offload: the Dask %s did not close within %s s; its close goes on",
            what, timeout,
        )
        return False
    return client.status == "closed"


#: The close of each ``distributed.Client`` that :func:`close_client`
#: started, on its own thread, until the client is garbage.
_CLOSING: weakref.WeakKeyDictionary[Any, threading.Thread] = weakref.WeakKeyDictionary()


def _close_without_timeout(client: Any, what: str) -> None:
    """``client.close(timeout=None)`` (its own thread); errors are logged."""
    try:
        client.close(timeout=None)
    except Exception as exc:  # noqa: BLE001 - close the rest regardless
        logger.warning(
            "offload: the Dask %s failed to close (%s: %s)", what, type(exc).__name__, exc
        )


def finish_closing(client: Any, timeout: float) -> None:
    """Wait up to ``timeout`` more for the close of a client that
    :func:`close_client` reported late (it waited for a busy scheduler,
    which the cluster's close has since stopped, or which is gone).

    A client that was not closed by :func:`close_client` is closed now.
    """
    closing = _CLOSING.get(client)
    if closing is None:
        if getattr(client, "status", None) != "closed":
            close_within(client, timeout, "client, after its cluster,")
        return
    closing.join(timeout)
    if closing.is_alive():
        logger.warning(
            "offload: the Dask client did not close within %s s more; its "
            "event-loop thread stays until its close ends", timeout,
        )


def close_cluster(cluster: Any, timeout: float) -> None:
    """Close the embedded cluster; if it will not, kill its worker processes.

    ``LocalCluster.close`` retires each worker cleanly, and raises on
    timeout while its close goes on.  Then the nannies are told not to
    restart their workers, the worker processes (this process's children,
    noted *before* the close, which forgets them as it retires them) are
    killed, and the close under way gets
    ``CLUSTER_CLOSE_GRACE`` more seconds to finish.
    """
    workers = list(getattr(cluster, "workers", {}).values())
    pids = [getattr(worker, "pid", None) for worker in workers]
    if close_within(cluster, timeout, "cluster"):
        return
    for worker in workers:
        # Tell each nanny not to restart its worker once it is killed: one
        # that had not yet been told to close (its cluster's loop was busy)
        # restarted it, and the close then waited for the new worker.
        close_gracefully = getattr(worker, "close_gracefully", None)
        if callable(close_gracefully):
            try:
                close_gracefully(reason="offload: the cluster did not close in time")
            except Exception:  # noqa: BLE001 - Dask internals; kill anyway
                logger.debug("could not tell a nanny to close", exc_info=True)
    killed = []
    for pid in pids:
        if not isinstance(pid, int) or pid <= 0:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
        killed.append(pid)
    logger.warning(
        "offload: killed the embedded Dask cluster's worker processes %s", killed
    )
    close_within(
        cluster, max(timeout, CLUSTER_CLOSE_GRACE), "cluster, after killing its workers,"
    )


#: ``distributed.comm.timeouts.tcp`` for the embedded cluster, unless the
#: user set one (Dask's default is 30 s).
EMBEDDED_TCP_TIMEOUT = "300s"

#: ``distributed.admin.low-level-log-length`` for the embedded cluster and
#: for the client of an ``address``, unless the user set one (Dask's
#: default is 1,000).  Dask keeps that many of each connection's recent
#: message *batches* for its developers, in the scheduler (which the
#: embedded cluster runs in the application's process), the client and the
#: workers.  A burst of tasks travels in big batches, so 1,000 of them held
#: most of the burst's messages and pickled tasks (2.2 KB per task still
#: alive after 5,000 tasks had ended, 0.6 KB with 10), and their scattered
#: blocks kept CPython from giving memory back: with a scheduler in another
#: process, 20,000 tasks left +165 MB resident in the client's, +68 MB
#: with 10.
EMBEDDED_LOG_LENGTH = 10


def embedded_config() -> Any:
    """Dask config for the embedded cluster (see DaskContext).

    Sockets read the TCP timeout when they connect, and the scheduler, the
    client and the workers read the log length when they start; the
    workers' nannies pass the config on to the worker processes.  A value
    the user changed from Dask's default is left alone.
    """
    import dask

    settings = _log_length_setting()
    if str(dask.config.get("distributed.comm.timeouts.tcp", "30s")) in ("30s", "30"):
        settings["distributed.comm.timeouts.tcp"] = EMBEDDED_TCP_TIMEOUT
    return dask.config.set(settings) if settings else contextlib.nullcontext()


def _client_config() -> Any:
    """Dask config for the client of an ``address``: the log length only.

    The client reads it when it connects; a remote cluster keeps its own.
    """
    import dask

    settings = _log_length_setting()
    return dask.config.set(settings) if settings else contextlib.nullcontext()


def _log_length_setting() -> dict[str, Any]:
    """``EMBEDDED_LOG_LENGTH``, unless the user changed Dask's default."""
    import dask

    if dask.config.get("distributed.admin.low-level-log-length", 1000) == 1000:
        return {"distributed.admin.low-level-log-length": EMBEDDED_LOG_LENGTH}
    return {}


def start_cluster(
    n_workers: int | None,
    threads_per_worker: int,
    processes: bool,
    security: Any,
    cluster_kwargs: dict[str, Any],
) -> Any:
    """Start the embedded ``LocalCluster``."""
    import dask

    # A free port: with None, Dask still serves HTTP on 8787, and warns (or,
    # with warnings as errors, fails) when another cluster holds that port.
    options = {"dashboard_address": ":0", **cluster_kwargs}
    if security is not None:
        options["security"] = security
    with dask.config.set({"distributed.scheduler.worker-saturation": math.inf}):
        return import_distributed().LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=processes,
            **options,
        )
