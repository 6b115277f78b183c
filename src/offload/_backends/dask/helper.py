"""The embedded Dask cluster, and the client of it, in a helper process.

What runs where::

    application process               helper process             Dask workers
    -------------------               --------------             ------------
    pool.submit ─ pickle ─ writer ──▶ reader: client.submit( ──▶ run_pickled()
                                        run_pickled, data, key)
    large argument (once) ─ writer ──▶ reader: client.scatter ─▶ a worker holds it
    reader thread ◀──────── writer ◀── Dask future done
      HelperFuture done                  ("done", key, status, data)
      DaskRouter._on_event ◀─ writer ◀── topic handler ◀───────── events
    cancel thread: run() ───────────▶ runner thread: client.run ─▶ every worker

A Dask scheduler and client that digest a burst of 100,000 tasks keep most
of the burst's memory resident in their process, even once every task is
released and freed (their long-lived state moves into the burst's
allocator arenas as it changes; measured in RELIABILITY.md).  So the
embedded cluster runs here, in a process of its own: the application's
process holds only offload's own per-task objects, which it frees.

:class:`HelperClient` is the part of ``distributed.Client`` that offload's
Dask pool, router, cancel pusher and scatterer use (``submit``, ``cancel``,
``run``, ``scatter``, ``subscribe_topic``, ``unsubscribe_topic``, ``close``),
forwarded over a
socket pair.  Each direction has a writer thread, so that neither the GUI
thread (submitting) nor Dask's event loop (reporting) ever blocks on a full
socket; each write carries every message queued since the last one.

Tasks and results cross as pickles that the helper never unpickles: it does
not need the application's modules, only Dask's workers do.
"""

from __future__ import annotations

import atexit
import logging
import pickle
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from offload._backends.dask.cluster import CLUSTER_CLOSE_GRACE
from offload._backends.dask.wire import EXIT_GRACE, Writer, hang_up
from offload._backends.dask.worker import run_task
from offload._backends.remote import describe_exit, describe_unpicklable, dumps

logger = logging.getLogger("offload.contexts.dask")

#: Seconds the helper may take to start its cluster (a spawned Python that
#: imports Dask, then spawns the workers, which import it too).
STARTUP_TIMEOUT = 120.0

class HelperLost(RuntimeError):
    """The helper process ended while a task or a request was pending."""


#: Orders a future's end with the adding of its done callbacks.
_FUTURE_LOCK = threading.Lock()


class HelperFuture:
    """The application's view of one Dask future of the helper."""

    __slots__ = ("key", "status", "_data", "_callbacks", "__weakref__")

    def __init__(self, key: str) -> None:
        self.key = key
        self.status = "pending"
        self._data: Any = None
        self._callbacks: list[Callable[[HelperFuture], None]] | None = []

    def add_done_callback(self, callback: Callable[[HelperFuture], None]) -> None:
        """Call ``callback(self)`` once done (at once if done already)."""
        with _FUTURE_LOCK:
            callbacks = self._callbacks
            if callbacks is not None:
                callbacks.append(callback)
                return
        callback(self)

    def done(self) -> bool:
        return self.status != "pending"

    def result(self) -> Any:
        if self.status != "finished":
            raise self.exception() or RuntimeError(f"the Dask future is {self.status}")
        return None if self._data is None else pickle.loads(self._data)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self.status != "error":
            return None
        error = self._data
        if isinstance(error, BaseException):
            return error
        try:
            error = pickle.loads(error)
        except Exception as exc:  # noqa: BLE001 - describe, never raise
            error = RuntimeError(f"the Dask task failed, and its error could not "
                                 f"be unpickled here ({type(exc).__name__}: {exc})")
        self._data = error
        return error

    def _finish(self, status: str, data: Any) -> None:
        """Record the outcome and run the callbacks (reader thread)."""
        with _FUTURE_LOCK:
            if self.status != "pending":
                return
            self._data = data
            self.status = status
            callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            try:
                callback(self)
            except Exception:  # noqa: BLE001 - never stop the reader
                logger.exception("offload: error in a Dask future's done callback")


class HelperScattered:
    """The application's view of data that the helper scattered.

    Given to :meth:`HelperClient.submit` after the other arguments, it
    stands for the data; :meth:`release` lets the helper drop it.
    """

    __slots__ = ("key", "_client")

    def __init__(self, key: str, client: HelperClient) -> None:
        self.key = key
        self._client = client

    def release(self) -> None:
        """Let the cluster forget the data once no task needs it (any thread)."""
        client = self._client
        if client.status == "running":
            client._writer.put(("forget", self.key))


class HelperClient:
    """A ``distributed.Client`` stand-in talking to the helper process.

    Made by :func:`start_helper`.  ``address`` and ``dashboard_link`` are
    the embedded cluster's.
    """

    def __init__(self, process: subprocess.Popen, connection: Connection,
                 address: str, dashboard_link: str) -> None:
        self._process = process
        self._connection = connection
        self.address = address
        self.dashboard_link = dashboard_link
        self.status = "running"
        self._event_handlers: dict[str, Callable[[Any], None]] = {}
        self._futures: dict[str, HelperFuture] = {}
        self._requests: dict[int, list[Any]] = {}
        self._request_numbers = iter(range(1, sys.maxsize))
        self._shut = False
        self._lock = threading.Lock()
        self._writer = Writer(connection, "offload-dask-helper-writer")
        self._reader = threading.Thread(
            target=self._read, name="offload-dask-helper-reader", daemon=True
        )
        self._reader.start()
        atexit.register(self._at_exit)

    @property
    def pid(self) -> int:
        return self._process.pid

    # What offload's pool, router and cancel pusher call ----------------------

    def submit(self, function: Callable[..., Any], *args: Any, key: str | None = None,
               pure: bool = False, priority: int = 0, **kwargs: Any) -> HelperFuture:
        """Submit ``function(*args, **kwargs)`` as Dask task ``key``, of
        Dask ``priority`` (as ``distributed.Client.submit``'s)."""
        self._check_running()
        if key is None:
            key = f"{getattr(function, '__name__', 'call')}-{uuid.uuid4().hex}"
        # Scattered data comes last; the helper puts its futures back there.
        shared = [arg.key for arg in args if type(arg) is HelperScattered]
        if shared:
            args = args[:-len(shared)]
        payload = (function, args, kwargs)
        try:
            data = dumps(payload)
        except Exception as exc:  # noqa: BLE001 - whatever pickling raises
            target = args[0] if len(args) == 1 and not kwargs else payload
            raise TypeError(describe_unpicklable(target, exc)) from exc
        # A task runner reports its outcome itself and returns None:
        # fetching that None would cost the helper a round trip to the
        # worker per task, which at 100,000 tasks left it minutes behind.
        wants_result = function is not run_task
        future = HelperFuture(key)
        with self._lock:
            # Under the lock that _lost takes: a future registered here is
            # either sent, or failed by _lost; never left pending.
            self._check_running()
            self._futures[key] = future
            self._writer.put(("submit", key, data, wants_result, priority, shared))
        return future

    def scatter(self, data: dict[str, bytes], timeout: float = 10.0
                ) -> dict[str, HelperScattered]:
        """Have the helper scatter each ``key: data`` (bytes), as
        ``distributed.Client.scatter`` would; never blocks.

        The helper scatters before it reads the next message, so a task
        submitted after this call finds the data.  If the scatter fails,
        the tasks that use the data fail with its error.
        """
        with self._lock:
            self._check_running()
            for key, value in data.items():
                self._writer.put(("scatter", key, value, timeout))
        return {key: HelperScattered(key, self) for key in data}

    def cancel(self, futures: list[HelperFuture]) -> None:
        """Cancel these futures in Dask (those that have not started)."""
        if self.status == "running":
            self._writer.put(("cancel", [future.key for future in futures]))

    def run(self, function: Callable[..., Any], *args: Any,
            on_error: str = "ignore") -> dict[str, Any]:
        """``client.run(function, *args)`` in the helper: replies by worker.

        Once the helper has ended there are no workers: ``{}``.
        """
        if self.status != "running":
            return {}
        return self._request("run", (function, args))

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(client, cluster, *args)`` in the helper; its result.

        For tests and diagnostics: what the embedded scheduler holds, say.
        """
        return self._request("call", (function, args))

    def subscribe_topic(self, topic: str, handler: Callable[[Any], None]) -> None:
        self._event_handlers[topic] = handler
        self._writer.put(("subscribe", topic))

    def unsubscribe_topic(self, topic: str) -> None:
        self._event_handlers.pop(topic, None)
        self._writer.put(("unsubscribe", topic))

    def close(self, timeout: float = 10.0) -> None:
        """Close the cluster and stop the helper; kill it if it will not."""
        if self.status == "closed":  # the helper ended by itself, or closed
            self._shut_down()
            return
        self.status = "closing"
        self._writer.put(("close", timeout))
        # The helper closes its client and then its cluster, each within
        # ``timeout``, and may give the cluster its close grace on top.
        limit = 2 * timeout + max(timeout, CLUSTER_CLOSE_GRACE) + EXIT_GRACE
        try:
            self._process.wait(limit)
        except subprocess.TimeoutExpired:
            logger.warning(
                "offload: the embedded Dask cluster's helper process did not "
                "close within %.0f s; killing it (its workers follow it)", limit
            )
            self._kill()
        self._shut_down()

    # Private -----------------------------------------------------------------

    def _check_running(self) -> None:
        if self.status != "running":
            raise RuntimeError(
                f"the embedded Dask cluster is {self.status}: its helper process "
                "has ended; make a new DaskContext"
            )

    def _request(self, kind: str, payload: Any) -> Any:
        data = dumps(payload)
        slot: list[Any] = [threading.Event(), None, None]
        with self._lock:
            self._check_running()
            number = next(self._request_numbers)
            self._requests[number] = slot
            self._writer.put((kind, number, data))
        if not slot[0].wait(STARTUP_TIMEOUT):
            with self._lock:
                self._requests.pop(number, None)
            raise TimeoutError(f"the Dask helper did not answer a {kind} request "
                               f"within {STARTUP_TIMEOUT} s")
        if slot[2] is not None:
            raise slot[2]
        return slot[1]

    def _read(self) -> None:
        """Dispatch what the helper sends (reader thread)."""
        connection = self._connection
        try:
            while True:
                try:
                    batch = connection.recv()
                except (EOFError, OSError):
                    return
                for message in batch:
                    try:
                        self._dispatch(message)
                    except Exception:  # noqa: BLE001 - never stop reading
                        logger.exception("offload: error handling a Dask helper message")
        finally:
            self._lost()

    def _dispatch(self, message: tuple) -> None:
        kind = message[0]
        if kind == "done":
            _, key, status, data = message
            with self._lock:
                future = self._futures.pop(key, None)
            if future is not None:
                future._finish(status, data)
        elif kind == "event":
            handler = self._event_handlers.get(message[1])
            if handler is not None:
                handler(message[2])
        elif kind == "reply":
            _, number, ok, data = message
            with self._lock:
                slot = self._requests.pop(number, None)
            if slot is None:
                return
            try:
                value = pickle.loads(data)
            except Exception as exc:  # noqa: BLE001 - report, never hang
                ok, value = False, exc
            if ok:
                slot[1] = value
            else:
                slot[2] = value if isinstance(value, BaseException) else RuntimeError(value)
            slot[0].set()

    def _lost(self) -> None:
        """The helper's end of the socket closed: fail what is pending."""
        with self._lock:
            expected = self.status != "running"
            self.status = "closed"
            futures = list(self._futures.values())
            self._futures.clear()
            requests = list(self._requests.values())
            self._requests.clear()
        if futures or not expected:
            try:
                code = self._process.wait(1.0)  # it closed the socket: exiting
            except subprocess.TimeoutExpired:
                code = None
            how = "is closing" if code is None else describe_exit(code)
            logger.log(logging.DEBUG if expected else logging.WARNING,
                       "offload: the embedded Dask cluster's helper process %s "
                       "with %d task(s) pending", how, len(futures))
            error = HelperLost(
                f"the helper process of the embedded Dask cluster {how} before "
                "this task ended; the task's result is lost.  Make a new "
                "DaskContext and submit it again"
            )
        else:
            error = HelperLost("the embedded Dask cluster was closed")
        for future in futures:
            future._finish("error", error)
        for slot in requests:
            slot[2] = error
            slot[0].set()

    def _kill(self) -> None:
        try:
            self._process.kill()
            self._process.wait(EXIT_GRACE)
        except (OSError, subprocess.TimeoutExpired):
            logger.warning("offload: could not kill the Dask helper process %d",
                           self._process.pid)

    def _shut_down(self) -> None:
        """Release the threads and the socket (the helper has exited)."""
        if self._shut:
            return
        self._shut = True
        atexit.unregister(self._at_exit)
        self._writer.stop(1.0)
        hang_up(self._connection)  # wakes the reader, if it still waits
        self._reader.join(EXIT_GRACE)
        self._connection.close()
        self.status = "closed"

    def _at_exit(self) -> None:
        """The application exits with the context open: stop the helper.

        Closing the socket tells the helper to kill its workers and exit.
        """
        if self._process.poll() is None:
            self.status = "closing"  # the pending tasks' loss is expected now
            hang_up(self._connection)
            try:
                self._process.wait(EXIT_GRACE)
            except subprocess.TimeoutExpired:
                self._kill()


def _picklable_config(config: dict[str, Any]) -> dict[str, Any]:
    """Dask's config, without the sections that do not pickle (logged)."""
    kept = {}
    for name, value in config.items():
        try:
            pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - whatever a value raises
            logger.warning(
                "offload: the Dask config section %r cannot be pickled (%s: %s), "
                "so the embedded cluster's helper process starts without it; "
                "use DaskContext(in_process=True) if the cluster needs it",
                name, type(exc).__name__, exc,
            )
            continue
        kept[name] = value
    return kept


def start_helper(options: dict[str, Any], timeout: float = STARTUP_TIMEOUT) -> HelperClient:
    """Start the helper, its cluster and its client; wait until they run.

    ``options``: the cluster's ``n_workers``, ``threads_per_worker``,
    ``processes``, ``security`` and ``cluster_kwargs``, and the client's
    ``timeout``.  The helper gets this process's ``sys.path`` (Dask's
    workers must import the modules of the tasks) and Dask config.
    """
    import dask

    ours, theirs = socket.socketpair()
    settings = {
        **options,
        "sys_path": list(sys.path),
        "dask_config": _picklable_config(dask.config.config),
    }
    try:
        process = subprocess.Popen(
            [sys.executable, "-c",
             "from offload._backends.dask.helper_main import main; main()",
             str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    connection = Connection(ours.detach())
    try:
        connection.send_bytes(pickle.dumps(settings, pickle.HIGHEST_PROTOCOL))
        if not connection.poll(timeout):
            raise TimeoutError(
                f"the embedded Dask cluster did not start within {timeout} s; "
                "its helper process was stopped.  On a slow or busy machine, "
                "give DaskContext a longer start_timeout="
            )
        reply = connection.recv()[0]
    except BaseException as exc:
        connection.close()
        process.kill()
        process.wait()
        if isinstance(exc, EOFError):
            raise RuntimeError(
                "the embedded Dask cluster's helper process "
                f"{describe_exit(process.returncode)} before its cluster started; "
                "see its output above"
            ) from None
        raise
    if reply[0] != "ready":
        connection.close()
        process.wait(EXIT_GRACE)
        raise pickle.loads(reply[1])
    return HelperClient(process, connection, reply[1], reply[2])
