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

See :mod:`offload._backends.dask.router`, :mod:`.pool` and
:mod:`.cancel` for each part.  For the embedded cluster, the client
above is a :class:`~offload._backends.dask.helper.HelperClient`, and the
real one, with the scheduler, runs in a helper process
(:mod:`.helper`, :mod:`.helper_main`).  Dask is imported when a ``DaskContext``
is made, not before.
"""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from typing import Any

from offload._backends.dask.cancel import (
    CancelPusher,
    DaskCancelFlag,
    DaskEvent,
    forget_cancelled,
)
from offload._backends.dask.cluster import (
    close_client,
    close_cluster,
    connect,
    embedded_config,
    finish_closing,
    forget_closed_servers,
    import_distributed,
    merge_span_metadata,
    start_cluster,
)
from offload._backends.dask.helper import STARTUP_TIMEOUT, HelperClient, start_helper
from offload._backends.dask.outbox import forget_topic
from offload._backends.dask.pool import DaskWorkerPool
from offload._backends.dask.router import DaskRouter
from offload._backends.dask.shared import SCATTER_THRESHOLD, Scatterer
from offload._backends.forwarding import check_forward
from offload._backends.interface import (
    ContextBase,
    check_max_workers,
    check_open,
    check_seconds,
)
from offload._backends.main_script import spare_workers_a_missing_script
from offload._event_loops.interface import IEventLoop
from offload._routing.interface import IMessageRouter

logger = logging.getLogger("offload.contexts.dask")

#: Dask's topic for cluster-wide scheduler events (workers added, removed).
_ALL_TOPIC = "all"


class DaskContext(ContextBase):
    """Run tasks on a Dask cluster: an embedded one, or yours.

    Parameters
    ----------
    address : str, optional
        The scheduler of a running cluster, e.g. ``"tcp://10.0.0.5:8786"``.
        :meth:`close` leaves that cluster running.
    client : distributed.Client, optional
        A client of yours to use instead (not with ``address``); ``close()``
        leaves it open.  offload leaves its handler of Dask's ``"all"``
        event topic alone (a client has one per topic), so a worker lost
        with a task of offload's is noticed when Dask re-runs the task
        elsewhere or gives up on it, not at once.
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
    forward_warnings : bool, optional
        Re-issue on the main thread, with ``warnings.warn_explicit``, the
        warnings that tasks raise on the workers, so that the
        application's filters apply (default True).
    forward_logging : bool, optional
        Handle on the main thread, with the application's loggers, the log
        records that tasks make on the workers at or above the
        application's root level (default True).  Workers in this process
        (``processes=False``) need neither: their warnings and records
        reach the application directly.
    scatter_threshold : int or None, optional
        Size in bytes (default 1 MiB) from which an argument of a task (a
        NumPy array, ``bytes`` or ``bytearray``) is sent to the cluster on
        its own, once for all the pending tasks given the same content
        (Dask's ``scatter``), instead of with each task.  None: never.
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
        forward_warnings: bool = True,
        forward_logging: bool = True,
        scatter_threshold: int | None = SCATTER_THRESHOLD,
        **cluster_kwargs: Any,
    ) -> None:
        self._forward = check_forward("DaskContext", forward_warnings, forward_logging)
        _check_threshold(scatter_threshold)
        if address is not None and client is not None:
            raise TypeError("give DaskContext an address or a client, not both")
        check_seconds("DaskContext(timeout=...)", timeout)
        check_seconds("DaskContext(start_timeout=...)", start_timeout)
        distributed = import_distributed()
        super().__init__()
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
            client = connect(address, security, timeout)
        elif not in_process and os.name == "posix":
            with embedded_config():
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
            with embedded_config():
                self._cluster = start_cluster(
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
        self._scatterer = Scatterer(client, self._token, scatter_threshold, timeout)
        #: Does this context watch the cluster's events (a client of its
        #: own), to fail the tasks of a lost worker at once?
        self._watches_cluster = self._owns_client
        if self._watches_cluster:
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
            self._user_client = connect(
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
            after_burst=self._after_burst, scatterer=self._scatterer,
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
        return import_distributed().Queue(
            f"{self._token}-queue-{next(self._router_numbers)}", client=self._client
        )

    def message_router(self, event_loop: IEventLoop) -> IMessageRouter:
        check_open(self)
        topic = f"{self._token}-topic-{next(self._router_numbers)}"
        router = DaskRouter(
            event_loop, self._client, topic, self._router_closed, forward=self._forward
        )
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
        if not self._mark_closed():
            return
        client = self._client
        client_closed = not self._owns_client
        user_client = self._user_client
        if user_client is not None and not close_client(user_client, self._timeout):
            finish_closing(user_client, self._timeout)
        # Each step runs whatever the one before did: a client that cannot
        # close in time (a scheduler swamped by 100,000 tasks, say) must
        # not leave the embedded cluster's processes running.
        try:
            try:
                # A client of yours stays open: what was scattered through
                # it must go now.
                self._scatterer.close()
                self._pusher.run_on_workers(forget_cancelled, self._token)
                self._pusher.close(self._timeout)
            finally:
                self._stop_watching()
                if not client_closed:
                    client_closed = close_client(client, self._timeout)
        finally:
            try:
                if self._cluster is not None:
                    try:
                        close_cluster(self._cluster, self._timeout)
                    finally:
                        # Even if closing failed: what is closed can be freed.
                        forget_closed_servers()
            finally:
                if not client_closed:
                    # Its close timed out (on a busy scheduler, which has
                    # had time since, or is gone): its loop thread stayed.
                    finish_closing(client, self._timeout)

    # Private ------------------------------------------------------------------

    def _after_burst(self) -> None:
        """A pool's burst of tasks ended (Dask's callback thread).

        Asks the embedded scheduler, on its own event loop, to merge its
        spans' metadata (see ``merge_span_metadata``).  A cluster that is
        not this context's (``address``, ``client``) is left alone.
        """
        cluster = self._cluster
        if cluster is None or self._closed:
            return
        try:
            cluster.loop.add_callback(merge_span_metadata, cluster.scheduler)
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

    def _stop_watching(self) -> None:
        if not self._watches_cluster:
            return
        self._watches_cluster = False
        try:
            self._client.unsubscribe_topic(_ALL_TOPIC)
        except Exception:  # noqa: BLE001 - the client is closing
            logger.debug("could not unsubscribe from Dask events", exc_info=True)


def _check_threshold(threshold: Any) -> None:
    """Refuse a ``scatter_threshold`` that is not a size in bytes, or None."""
    if threshold is None:
        return
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise TypeError(
            "DaskContext(scatter_threshold=...) must be a size in bytes (an "
            f"int) or None, got {threshold!r}"
        )
    if threshold < 1:
        raise ValueError(
            "DaskContext(scatter_threshold=...) must be at least 1 byte (None "
            f"turns scattering off), got {threshold}"
        )
