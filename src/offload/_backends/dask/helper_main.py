"""The embedded Dask cluster's helper process: its main and its server.

What runs where, in the helper::

    main thread: serve()                 Dask's threads
    --------------------                 --------------
    read a batch from the socket
      "submit" ── client.submit(run_pickled, data) ─▶ workers run it
                                         done callback ─▶ writer: "done"
      "scatter" ── client.scatter({key: data}) ─────▶ a worker holds it
      "forget" ── release the scattered data
      "cancel" ── client.cancel(...)
      "subscribe" / "unsubscribe"        topic handler ─▶ writer: "event"
      "run" / "call" ─▶ runner thread: client.run(...) ─▶ writer: "reply"
      "close" ── close client and cluster, exit
    end of file (the application is gone): kill the workers, exit

The application side is :mod:`.helper`; the socket's framing is
:mod:`.wire`.  Started as ``python -c "...; main()" <fd>``, so this module
is imported only in the helper process.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

from offload._backends.dask.cluster import (
    BURST,
    close_client,
    close_cluster,
    finish_closing,
    forget_task_keys,
    import_distributed,
    merge_span_metadata,
    start_cluster,
)
from offload._backends.dask.wire import EXIT_GRACE, Writer, pickled_error
from offload._backends.dask.worker import run_pickled
from offload._backends.remote import dumps

logger = logging.getLogger("offload.contexts.dask")


class _Helper:
    """The helper process: a cluster, a client, and the socket's two threads."""

    def __init__(self, connection: Connection, settings: dict[str, Any]) -> None:
        self._connection = connection
        cluster_kwargs = settings["cluster_kwargs"]
        self.cluster = start_cluster(
            settings["n_workers"], settings["threads_per_worker"],
            settings["processes"], settings["security"], cluster_kwargs,
        )
        try:
            self.client = import_distributed().Client(
                self.cluster, security=settings["security"],
                timeout=settings["timeout"], set_as_default=False,
            )
        except BaseException:
            self.cluster.close()
            raise
        self._futures: dict[str, Any] = {}
        #: Scattered data by key (its Dask future), or why it failed.
        self._shared: dict[str, Any] = {}
        self._since_trim = 0
        self._lock = threading.Lock()
        self._writer = Writer(connection, "offload-dask-helper-writer")
        self._jobs: deque[tuple] = deque()
        self._job_wake = threading.Event()
        self._runner = threading.Thread(target=self._run_jobs, name="offload-dask-run",
                                        daemon=True)
        self._runner.start()

    def ready(self) -> None:
        self._writer.put(("ready", self.cluster.scheduler_address,
                          self.cluster.dashboard_link))

    def serve(self) -> None:
        """Handle the application's messages until it closes us or goes."""
        connection = self._connection
        while True:
            try:
                batch = connection.recv()
            except (EOFError, OSError):
                self._abandoned()
                return
            for message in batch:
                kind = message[0]
                if kind == "submit":
                    self._submit(*message[1:])
                elif kind == "close":
                    self._close(message[1])
                    return
                else:
                    self._handle(message)

    def _submit(self, key: str, data: bytes, wants_result: bool, priority: int = 0,
                shared: tuple[str, ...] = ()) -> None:
        try:
            # Dask gives the task the data of these futures (scattered).
            scattered = [self._scattered(name) for name in shared]
            future = self.client.submit(
                run_pickled, data, *scattered, key=key, pure=False, priority=priority
            )
        except Exception as exc:  # noqa: BLE001 - report it as the task's end
            self._writer.put(("done", key, "error", pickled_error(exc)))
            return
        with self._lock:
            self._futures[key] = future
            self._since_trim += 1
        future.add_done_callback(self._done if wants_result else self._done_no_result)

    def _done_no_result(self, future: Any) -> None:
        self._done(future, wants_result=False)

    def _done(self, future: Any, wants_result: bool = True) -> None:
        """A Dask future ended (Dask's callback thread): tell the application."""
        key = future.key
        status = future.status
        try:
            if status == "finished":
                data = future.result() if wants_result else None
            elif status == "cancelled":
                data = None
            else:
                status = "error"
                data = pickled_error(future.exception())
        except Exception as exc:  # noqa: BLE001 - never leave it pending
            status, data = "error", pickled_error(exc)
        self._writer.put(("done", key, status, data))
        with self._lock:
            self._futures.pop(key, None)
            burst_ended = not self._futures and self._since_trim >= BURST
            if burst_ended:
                self._since_trim = 0
        if burst_ended:
            self._trim()

    def _trim(self) -> None:
        """A burst ended: trim what Dask keeps per task (see ``cluster.forget_task_keys``)."""
        forget_task_keys()
        try:
            self.cluster.loop.add_callback(
                merge_span_metadata, self.cluster.scheduler
            )
        except Exception:  # noqa: BLE001 - a courtesy
            logger.debug("could not trim the Dask scheduler's span metadata", exc_info=True)

    def _scattered(self, key: str) -> Any:
        """The Dask future of scattered data ``key``; raises why it has none."""
        future = self._shared.get(key)
        if isinstance(future, BaseException):
            raise RuntimeError(
                f"a large argument of this task could not be sent to the "
                f"cluster: {type(future).__name__}: {future}"
            ) from future
        if future is None:
            raise RuntimeError(f"the scattered data {key!r} is gone")
        return future

    def _scatter(self, key: str, data: bytes, timeout: float) -> None:
        """Send ``data`` to a worker (the reading thread, which waits: the
        tasks that follow need it)."""
        try:
            self._shared[key] = self.client.scatter({key: data}, timeout=timeout)[key]
        except Exception as exc:  # noqa: BLE001 - the tasks that use it fail
            self._shared[key] = exc

    def _handle(self, message: tuple) -> None:
        kind = message[0]
        client = self.client
        if kind == "scatter":
            self._scatter(*message[1:])
        elif kind == "forget":
            future = self._shared.pop(message[1], None)
            if future is not None and not isinstance(future, BaseException):
                future.release()
        elif kind == "cancel":
            with self._lock:
                futures = [self._futures[key] for key in message[1] if key in self._futures]
            if futures:
                client.cancel(futures)
        elif kind == "subscribe":
            topic = message[1]
            client.subscribe_topic(topic, lambda event: self._forward(topic, event))
        elif kind == "unsubscribe":
            client.unsubscribe_topic(message[1])
        elif kind in ("run", "call"):
            self._jobs.append(message)
            self._job_wake.set()

    def _forward(self, topic: str, event: Any) -> None:
        self._writer.put(("event", topic, event))

    def _run_jobs(self) -> None:
        """``run`` and ``call`` requests, in order, off the reading thread."""
        while True:
            self._job_wake.wait()
            self._job_wake.clear()
            while self._jobs:
                kind, number, data = self._jobs.popleft()
                try:
                    function, args = pickle.loads(data)
                    if kind == "run":
                        value = self.client.run(function, *args, on_error="ignore")
                    else:
                        value = function(self.client, self.cluster, *args)
                    reply = ("reply", number, True, dumps(value))
                except Exception as exc:  # noqa: BLE001 - the caller gets it
                    reply = ("reply", number, False, pickled_error(exc))
                self._writer.put(reply)

    def _close(self, timeout: float) -> None:
        try:
            client_closed = close_client(self.client, timeout)
        finally:
            try:
                close_cluster(self.cluster, timeout)
            finally:
                if not client_closed:
                    finish_closing(self.client, timeout)
                self._writer.stop(EXIT_GRACE)

    def _abandoned(self) -> None:
        """The application is gone: kill the workers, as fast as possible."""
        for worker in list(getattr(self.cluster, "workers", {}).values()):
            pid = getattr(worker, "pid", None)
            if isinstance(pid, int) and pid > 0:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


def main() -> None:
    """Entry point of the helper process: ``python -c ... <fd>``."""
    # A Ctrl-C at the terminal reaches every process of its group: the
    # application decides what it means, and the helper ends when the
    # application closes the context or goes.  (Its workers inherit this.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    connection = Connection(int(sys.argv[1]))
    settings = pickle.loads(connection.recv_bytes())
    sys.path[:] = settings["sys_path"]
    sys.argv[:] = ["offload-dask-helper"]
    import dask

    dask.config.update(dask.config.config, settings["dask_config"], priority="new")
    try:
        helper = _Helper(connection, settings)
    except BaseException as exc:  # noqa: BLE001 - tell the application why
        connection.send([("failed", pickled_error(exc))])
        connection.close()
        return
    helper.ready()
    started = time.monotonic()
    helper.serve()
    logger.debug("offload: Dask helper served for %.1f s", time.monotonic() - started)
    # Dask's own threads would keep a normal exit waiting, so the helper
    # exits at once; but first it runs multiprocessing's exit finalizers,
    # which unlink the semaphores of the nannies' queues.  Left to the
    # resource tracker, they were unlinked too, with a "leaked semaphore
    # objects" warning on the application's terminal.  The function is
    # private, and a normal exit (the public way to run the finalizers) also
    # runs Dask's exit handlers on the cluster of an application that is
    # gone: its scheduler logs CRITICAL errors and tracebacks to the
    # application's terminal while it fails to reach the lost client, and
    # its close can outlast the application's wait for the helper (tried
    # for issue 29).  So the name stays, guarded: a Python without it is
    # left alone, and tests/test_public_apis.py says when it has gone.
    import multiprocessing.util

    try:
        run_finalizers = getattr(multiprocessing.util, "_run_finalizers", None)
        if run_finalizers is not None:
            run_finalizers(0)
    except Exception:  # noqa: BLE001 - the exit matters more
        logger.debug("multiprocessing's finalizers failed", exc_info=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
