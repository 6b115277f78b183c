"""Context for tasks running on a Dask distributed cluster.

What runs where::

    main thread            client loop thread          Dask workers
    -----------            ------------------          ------------
    executor.submit ──── client.submit(runner) ─────▶ runner()
                                                        send() ─▶ outbox
                           topic handler ◀── events ── (batch every 5 ms,
                             Inbox.put_many              final at once)
    futures updated ◀──── ping
    future.cancel()
      flag.set() ──▶ cancel thread: client.run(mark_cancelled) ─▶ set of keys
                                                        flag.is_set(): local

See :mod:`offload._routing.dask_router`, :mod:`.dask_pool` and
:mod:`.dask_cancel` for each part.  For the embedded cluster, the client
above is a :class:`~offload._contexts.dask_helper.HelperClient`, and the
real one, with the scheduler, runs in a helper process
(:mod:`.dask_helper`).  Dask is imported when a ``DaskContext``
is made, not before.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from offload._contexts.dask_cancel import (
    CancelPusher,
    DaskCancelFlag,
    DaskEvent,
    forget_cancelled,
)
from offload._contexts.dask_helper import STARTUP_TIMEOUT, HelperClient, start_helper
from offload._contexts.dask_pool import DaskWorkerPool
from offload._contexts.interface import (
    CloseNotices,
    IParallelContext,
    check_max_workers,
    check_open,
    check_seconds,
)
from offload._event_loops.interface import IEventLoop
from offload._routing.dask_outbox import forget_topic
from offload._routing.dask_router import DaskRouter
from offload._routing.interface import IMessageRouter
from offload._routing.process_main import spare_workers_a_missing_script


def _distributed() -> Any:
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


logger = logging.getLogger("offload.contexts.dask")

#: Dask's topic for cluster-wide scheduler events (workers added, removed).
_ALL_TOPIC = "all"


class DaskContext(IParallelContext):
    """Run tasks on a Dask cluster: an embedded one, or yours.

    Parameters
    ----------
    address : str, optional
        The scheduler of a running cluster, e.g. ``"tcp://10.0.0.5:8786"``.
        :meth:`close` leaves that cluster running.
    client : distributed.Client, optional
        A client of yours to use instead (not with ``address``); ``close()``
        leaves it open.
    security : distributed.Security, optional
        TLS settings, passed to the client (and the embedded cluster).
    timeout : float
        Seconds to wait for the scheduler before giving up with
        ``ConnectionError`` (default 10), and for each step of
        :meth:`close`.
    start_timeout : float
        Seconds the embedded cluster's helper process may take to start
        the cluster (default 120: a new Python that imports Dask, then
        spawns the workers, which import it too).  After that the helper is
        killed, with its workers, and ``TimeoutError`` says so.
    n_workers, threads_per_worker, processes
        The embedded ``LocalCluster`` (no ``address``, no ``client``): by
        default as many single-threaded worker processes as Dask picks for
        this machine.
    in_process : bool
        Run the embedded cluster's scheduler, and the client of it, in this
        process instead of a helper process (default False; see Notes).
        Always True where there is no POSIX (Windows), for now.
    **cluster_kwargs
        More ``LocalCluster`` arguments.

    Notes
    -----
    With no ``address`` and no ``client``, the context starts a
    ``LocalCluster`` of worker processes that it owns and closes on
    :meth:`close`.  Its scheduler and the client offload submits through
    run in a helper process of their own: a Dask scheduler and client that
    went through a burst of tasks keep most of the burst's memory resident
    in their process for good (100,000 tasks: over 800 MB), and with the
    helper that process is not your application's.  The helper gets this
    process's ``sys.path`` and Dask config; tasks, results and messages
    travel through it as pickles, which it never unpickles.  ``client``
    gives a client of that scheduler in this process, made when first
    asked for.  ``in_process=True`` keeps the scheduler and the client
    here, as Dask itself does (faster to start, slower with many tasks).
    If the helper process dies, the tasks it held FAIL with an error that
    says so, and the context refuses new ones; if your application dies,
    or exits without closing the context, the helper and its workers end
    too.  Dask starts its worker processes by spawning them; with
    ``in_process=True`` they import your script's main module: guard its
    entry point with ``if __name__ == "__main__":``.  The embedded cluster
    sets Dask's
    ``distributed.scheduler.worker-saturation`` to ``inf`` (every task goes
    to a worker at once), which doubles the throughput of small tasks, and,
    unless you configured it, raises ``distributed.comm.timeouts.tcp`` from
    30 s to 300 s: its scheduler shares a process (and its GIL) with a
    client, and while it digests 100,000 tasks it may not read
    its sockets for 30 s, after which Dask declared the client's
    connection dead and failed every task.  On loopback a peer that is
    really gone closes its socket; it is not found by that timeout.  It
    also lowers ``distributed.admin.low-level-log-length``, unless you
    configured it, from 1,000 to 10: Dask keeps that many recent message
    batches of each connection for debugging, and after a burst of tasks
    they held most of its messages.  The
    client made for an ``address`` gets the same log length (only it: the
    cluster keeps its own settings).

    Workers of a remote cluster need offload installed, and the modules of
    the functions you submit importable.  Make, use and close the context on
    the main thread.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        client: Any = None,
        security: Any = None,
        timeout: float = 10.0,
        start_timeout: float = STARTUP_TIMEOUT,
        n_workers: int | None = None,
        threads_per_worker: int = 1,
        processes: bool = True,
        in_process: bool = False,
        **cluster_kwargs: Any,
    ) -> None:
        if address is not None and client is not None:
            raise TypeError("give DaskContext an address or a client, not both")
        check_seconds("DaskContext(timeout=...)", timeout)
        check_seconds("DaskContext(start_timeout=...)", start_timeout)
        distributed = _distributed()
        self._closed = False
        self._close_notices = CloseNotices()
        self._cluster: Any = None
        self._helper: HelperClient | None = None
        #: A client of the helper's scheduler, made when first asked for.
        self._user_client: Any = None
        self._owns_client = client is None
        self._timeout = timeout
        self._security = security
        if client is not None:
            if not isinstance(client, distributed.Client):
                raise TypeError(
                    f"client must be a distributed.Client, got {client!r}"
                )
        elif address is not None:
            client = _connect(address, security, timeout)
        elif not in_process and os.name == "posix":
            with _embedded_config():
                client = self._helper = start_helper({
                    "n_workers": n_workers,
                    "threads_per_worker": threads_per_worker,
                    "processes": processes,
                    "security": security,
                    "cluster_kwargs": cluster_kwargs,
                    "timeout": timeout,
                }, start_timeout)
        else:
            # Its worker processes are spawned from this one: a script fed
            # on standard input has no file for them to run.
            spare_workers_a_missing_script()
            with _embedded_config():
                self._cluster = _start_cluster(
                    n_workers, threads_per_worker, processes, security, cluster_kwargs
                )
                try:
                    client = distributed.Client(
                        self._cluster, security=security, timeout=timeout,
                        set_as_default=False,
                    )
                except BaseException:
                    self._cluster.close()
                    raise
        self._client = client
        self._token = f"offload-{uuid.uuid4().hex[:12]}"
        self._flags = itertools.count()
        self._router_numbers = itertools.count()
        self._routers: dict[str, DaskRouter] = {}
        self._pusher = CancelPusher(client)
        self._previous_all_handler = getattr(client, "_event_handlers", {}).get(
            _ALL_TOPIC
        )
        client.subscribe_topic(_ALL_TOPIC, self._on_cluster_event)

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` this context submits through.

        For the embedded cluster in its helper process: a client of its
        scheduler in this process, made on first use and closed by
        :meth:`close` (offload submits through the helper's own).
        """
        if self._helper is None:
            return self._client
        check_open(self)
        if self._user_client is None:
            self._user_client = _connect(
                self._helper.address, self._security, self._timeout
            )
        return self._user_client

    @property
    def scheduler_address(self) -> str:
        """The address of the cluster's scheduler."""
        if self._helper is not None:
            return self._helper.address
        return self._client.scheduler.address

    def worker_pool(self, *, max_workers: int | None = None) -> DaskWorkerPool:
        check_open(self)
        check_max_workers(max_workers)
        return DaskWorkerPool(
            self._client, self._routers.get, max_workers,
            f"{self._token}-{next(self._router_numbers)}",
            after_burst=self._after_burst,
        )

    def event(self) -> DaskEvent:
        """A new event for your tasks, with the API of ``threading.Event``
        (see :meth:`IParallelContext.event`): a ``distributed.Event``.

        Each call of its methods is a round trip to the scheduler, from the
        main thread (through :attr:`client`) or from a task; ``wait()``
        wakes as soon as the scheduler sees a ``set()``.  It works while
        the context is open.
        """
        check_open(self)
        return DaskEvent(f"{self._token}-event-{next(self._flags)}", self.client)

    def cancel_flag(self) -> DaskCancelFlag:
        """A new cancel flag for one task: answered from worker memory."""
        check_open(self)
        return DaskCancelFlag(f"{self._token}:{next(self._flags)}", self._pusher)

    def queue(self) -> Any:
        """A ``distributed.Queue`` (slow, about 3,000 items/s; fine for control)."""
        check_open(self)
        return _distributed().Queue(
            f"{self._token}-queue-{next(self._router_numbers)}", client=self._client
        )

    def message_router(self, event_loop: IEventLoop) -> IMessageRouter:
        check_open(self)
        topic = f"{self._token}-topic-{next(self._router_numbers)}"
        router = DaskRouter(event_loop, self._client, topic, self._router_closed)
        self._routers[topic] = router
        return router

    def close(self) -> None:
        """Release what this context made; close the cluster if it owns it.

        Call it on the main thread.  Each step waits up to ``timeout``
        seconds.  An embedded cluster that does not close in time (its
        scheduler still digesting a burst of tasks just released, say) has
        its worker processes killed and gets ``CLUSTER_CLOSE_GRACE`` (30)
        more seconds; so right after 100,000 tasks, ``close()`` may take
        that long, and it leaves no thread, socket or process behind.
        """
        if self._closed:
            return
        self._closed = True
        self._close_notices.run()
        client = self._client
        client_closed = not self._owns_client
        user_client = self._user_client
        if user_client is not None and not _close_within(
            user_client, self._timeout, "client"
        ):
            _finish_closing(user_client, self._timeout)
        # Each step runs whatever the one before did: a client that cannot
        # close in time (a scheduler swamped by 100,000 tasks, say) must
        # not leave the embedded cluster's processes running.
        try:
            try:
                self._pusher.run_on_workers(forget_cancelled, self._token)
                self._pusher.close(self._timeout)
            finally:
                self._restore_all_handler()
                if not client_closed:
                    client_closed = _close_within(client, self._timeout, "client")
        finally:
            try:
                if self._cluster is not None:
                    try:
                        _close_cluster(self._cluster, self._timeout)
                    finally:
                        # Even if closing failed: what is closed can be freed.
                        _forget_closed_servers()
            finally:
                if not client_closed:
                    # Its close timed out (on a busy scheduler, which has
                    # had time since, or is gone): its loop thread stayed.
                    _finish_closing(client, self._timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    def call_on_close(self, callback: Callable[[], None]) -> bool:
        """Call ``callback`` (a bound method, held weakly) as the context
        closes: how an executor learns that its context is gone."""
        self._close_notices.add(callback)
        return True

    def __enter__(self) -> DaskContext:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Private ------------------------------------------------------------------

    def _after_burst(self) -> None:
        """A pool's burst of tasks ended (Dask's callback thread).

        Asks the embedded scheduler, on its own event loop, to merge its
        spans' metadata (see ``_merge_span_metadata``).  A cluster that is
        not this context's (``address``, ``client``) is left alone.
        """
        cluster = self._cluster
        if cluster is None or self._closed:
            return
        try:
            cluster.loop.add_callback(_merge_span_metadata, cluster.scheduler)
        except Exception:  # noqa: BLE001 - a courtesy; never fail a task
            logger.debug("could not trim the Dask scheduler's span metadata", exc_info=True)

    def _router_closed(self, router: DaskRouter) -> None:
        self._routers.pop(router.topic, None)
        if not self._closed:
            self._pusher.run_on_workers(forget_topic, router.topic)

    def _on_cluster_event(self, event: tuple[float, Any]) -> None:
        """Scheduler events (client loop thread): fail tasks of lost workers."""
        try:
            message = event[1]
            if isinstance(message, dict) and message.get("action") == "remove-worker":
                keys = message.get("processing-tasks") or ()
                address = message.get("worker", "?")
                for router in list(self._routers.values()):
                    router.workers_lost(keys, address)
        except Exception:  # noqa: BLE001 - never break the client's loop
            logger.exception("offload: error handling a Dask cluster event")
        previous = self._previous_all_handler
        if previous is not None:
            previous(event)

    def _restore_all_handler(self) -> None:
        client = self._client
        handlers = getattr(client, "_event_handlers", {})
        if handlers.get(_ALL_TOPIC) != self._on_cluster_event:
            return  # someone subscribed after us; leave theirs
        try:
            if self._previous_all_handler is not None:
                client.subscribe_topic(_ALL_TOPIC, self._previous_all_handler)
            else:
                client.unsubscribe_topic(_ALL_TOPIC)
        except Exception:  # noqa: BLE001 - the client is closing
            logger.debug("could not unsubscribe from Dask events", exc_info=True)


def _forget_closed_servers() -> None:
    """Let the embedded cluster's closed scheduler (and in-process workers)
    be garbage.

    ``distributed.core._expects_comm`` caches, without limit, whether each
    handler a server dispatched to takes a ``comm`` first; the handlers are
    bound methods, so every scheduler and worker that ever ran in this
    process stayed alive, with the workers and tasks it last knew.
    ``distributed.utils.has_keyword`` keeps up to 1,000 such answers too.
    Emptying both costs one signature inspection per handler the next time
    a live server dispatches to it.  Both are Dask internals: a Dask
    without them is left alone.
    """
    for module_name, function_name in (
        ("distributed.core", "_expects_comm"),
        ("distributed.utils", "has_keyword"),
    ):
        module = sys.modules.get(module_name)
        cache_clear = getattr(getattr(module, function_name, None), "cache_clear", None)
        if cache_clear is not None:
            cache_clear()


def _merge_span_metadata(scheduler: Any) -> None:
    """Drop repeats from the metadata of the scheduler's spans.

    Every ``client.submit`` appends ``{"type": "Future"}`` to the
    ``collections`` metadata of the span its task joins, the default span
    unless the user opened one, and Dask never trims it: three blocks per
    task for the scheduler's lifetime (100,000 tasks: ~17 MB), in the
    application's process for the embedded cluster, and scattered through
    the memory of the burst that made them, which they keep CPython from
    giving back.  Each distinct entry is kept once, in order.  Runs on the
    scheduler's event loop; a Dask whose spans look different is left
    alone.
    """
    try:
        extension = scheduler.extensions.get("spans")
        spans = list(getattr(extension, "spans", {}).values())
    except Exception:  # noqa: BLE001 - Dask internals; never break its loop
        return
    for span in spans:
        metadata = getattr(span, "_metadata", None)
        collections = metadata.get("collections") if isinstance(metadata, dict) else None
        if not isinstance(collections, list) or len(collections) < 2:
            continue
        unique: list[Any] = []
        for item in collections:
            if item not in unique:
                unique.append(item)
        if len(unique) < len(collections):
            collections[:] = unique


def _connect(address: str, security: Any, timeout: float) -> Any:
    """A client of the scheduler at ``address``, or a clear error."""
    deadline = time.monotonic() + timeout
    try:
        _probe(address, deadline)
        with _client_config():
            return _distributed().Client(
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


def _close_within(closable: Any, timeout: float, what: str) -> bool:
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


def _finish_closing(client: Any, timeout: float) -> None:
    """Finish closing a client whose ``close`` timed out.

    It timed out waiting for a busy scheduler, and ``Client.close`` stops
    the client's event-loop thread only when it returns in time; the close
    itself goes on in that loop.  So: close it again if it is not closed
    yet, then stop the loop thread (a no-op for a stopped one).
    """
    if getattr(client, "status", None) != "closed" and not _close_within(
        client, timeout, "client, after its cluster,"
    ):
        return
    stop = getattr(getattr(client, "_loop_runner", None), "stop", None)
    if stop is None:
        return
    try:
        stop()
    except Exception:  # noqa: BLE001 - Dask internals; the rest is closed
        logger.debug("could not stop the Dask client's event loop", exc_info=True)


def _close_cluster(cluster: Any, timeout: float) -> None:
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
    if _close_within(cluster, timeout, "cluster"):
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
    _close_within(
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


def _embedded_config() -> Any:
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


def _start_cluster(
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
        return _distributed().LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=processes,
            **options,
        )
