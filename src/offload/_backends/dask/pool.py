"""A ``concurrent.futures.Executor`` that runs offload's task runners on Dask.

What runs where::

    main thread                     Dask callback thread      Dask worker
    -----------                     --------------------      -----------
    pool.submit(runner)
      [max_workers reached: wait
       in a local queue]
      client.submit(run_task, ───────────────────────────▶ run_task(runner)
                    runner)                                    bind the sender
                                                               runner()
                                    Dask future done:
                                      pool future done
                                      (error → explained)
                                      launch the next queued

The runner reports every outcome of the task itself, as messages, so a Dask
future only fails when something outside the task broke: the worker was
lost (``KilledWorker``), the task could not be unpickled on the worker, ...
The executor (its pool handle's done callback) turns such a failure into a
CRASHED message.

No result travels back through Dask (a runner returns None), so a finished
task costs no extra round trip.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from offload._backends.dask.cancel import DaskCancelFlag, restart_running
from offload._backends.dask.cluster import BURST, forget_task_keys
from offload._backends.dask.helper import HelperClient, HelperLost
from offload._backends.dask.outbox import DaskSender
from offload._backends.dask.router import TaskRecord
from offload._backends.dask.shared import Scatterer
from offload._backends.dask.worker import run_task
from offload._routing.protocol import TaskRunner

logger = logging.getLogger("offload.contexts.dask")

#: Seconds ``shutdown(wait=True)`` waits for Dask futures before giving up.
SHUTDOWN_TIMEOUT = 30.0

#: Times a task is sent again because the scattered data it needs was lost.
RESEND_LIMIT = 3

class _Job:
    __slots__ = (
        "pool_future", "function", "args", "kwargs", "flag", "record", "router", "priority",
        "shared", "resent",
    )

    def __init__(self, pool_future: concurrent.futures.Future, function: Callable,
                 args: tuple, kwargs: dict, priority: int = 0) -> None:
        self.pool_future = pool_future
        #: Higher starts first: Dask's own ``priority`` of ``client.submit``,
        #: and the order of the jobs waiting here.
        self.priority = priority
        self.function = function
        self.args = args
        self.kwargs = kwargs
        self.flag: DaskCancelFlag | None = None
        self.record: TaskRecord | None = None
        self.router: Any = None
        #: The tokens and Dask futures of its scattered arguments, from
        #: ``Scatterer.share``; None once released (or if it has none).
        self.shared: tuple[list[str], list[Any]] | None = None
        #: How many times it was sent again after its scattered data was lost.
        self.resent = 0


class DaskWorkerPool(concurrent.futures.Executor):
    """Runs callables on the Dask cluster of a ``DaskContext``.

    Made by ``DaskContext.worker_pool()``.  ``submit`` may be called from any
    thread; offload's executor calls it on the main thread.

    Parameters
    ----------
    client : distributed.Client
        Where tasks are submitted.
    find_router : callable
        ``find_router(topic) -> DaskRouter | None``: the router that a
        runner's sender belongs to, told about each task it carries.
    max_workers : int, optional
        At most this many tasks are submitted to Dask at a time; the others
        wait here, in order.  Default: no limit (Dask queues them).
    key_prefix : str
        Dask keys are ``f"{key_prefix}-{n}"``.
    after_burst : callable, optional
        Called (no arguments, in Dask's callback thread) when the pool has
        nothing pending any more and at least ``BURST`` tasks went through
        since the last call: the context's chance to trim what Dask keeps
        per task.  It must not block and must not raise.
    scatterer : Scatterer, optional
        Sends the large arguments of tasks to the cluster once for all the
        tasks that use them (see :mod:`.shared`).
    """

    def __init__(
        self,
        client: Any,
        find_router: Callable[[str], Any],
        max_workers: int | None,
        key_prefix: str,
        after_burst: Callable[[], None] | None = None,
        scatterer: Scatterer | None = None,
    ) -> None:
        self._client = client
        self._scatterer = scatterer
        self._after_burst = after_burst
        self._find_router = find_router
        self._max_workers = max_workers
        self._key_prefix = key_prefix
        self._numbers = itertools.count()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._waiting: deque[_Job] = deque()
        #: Dask futures not yet done (kept so that Dask keeps their tasks),
        #: each with its pool future.
        self._pending: dict[Any, concurrent.futures.Future] = {}
        #: Tasks handed to Dask since the key cache was last emptied.  Not
        #: the most pending at once: with ``max_workers`` that stays small
        #: however many tasks go through.
        self._since_forget = 0
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
               ) -> concurrent.futures.Future:
        """Run ``fn(*args, **kwargs)`` on a worker; return its future."""
        return self._submit(fn, args, kwargs, 0)

    def _offload_submit_priority(self, fn: Callable[..., Any], priority: int
                                 ) -> concurrent.futures.Future:
        """Run ``fn()`` with Dask priority ``priority`` (higher starts
        first); return its pool future."""
        return self._submit(fn, (), {}, priority)

    def _submit(self, fn: Callable[..., Any], args: tuple, kwargs: dict, priority: int
                ) -> concurrent.futures.Future:
        if self._shutdown:
            raise RuntimeError(
                "cannot submit to a Dask worker pool that was shut down; "
                "make a new one with DaskContext.worker_pool()"
            )
        job = _Job(concurrent.futures.Future(), fn, args, kwargs, priority)
        if isinstance(fn, TaskRunner) and not args and not kwargs:
            flag = fn.cancel_flag
            if isinstance(flag, DaskCancelFlag):
                job.flag = flag
            send = fn.send
            if type(send) is DaskSender:
                router = self._find_router(send.topic)
                if router is not None:
                    if self._scatterer is not None:
                        # At submit, as a snapshot: the caller may change
                        # an array once submit returns.
                        job.shared = self._scatterer.share(fn)
                    key = f"{self._key_prefix}-{next(self._numbers)}"
                    job.record = TaskRecord(fn.task_id, key, fn.cancel_flag.set)
                    job.router = router
                    router.track(job.record)
                    if job.flag is not None:
                        job.flag.record = job.record
        limit = self._max_workers
        with self._lock:
            if limit is not None and self._in_flight >= limit:
                waiting = self._waiting
                if priority or (waiting and waiting[-1].priority < 0):
                    index = len(waiting)
                    while index and waiting[index - 1].priority < priority:
                        index -= 1
                    waiting.insert(index, job)
                else:
                    waiting.append(job)
                return job.pool_future
            self._in_flight += 1
        try:
            launched = self._launch(job, reraise=True)
        except BaseException:
            self._release_slot()
            raise
        if not launched:
            self._release_slot()
        return job.pool_future

    def _offload_kill(self, pool_future: concurrent.futures.Future) -> None:
        """Force-cancel the task of ``pool_future`` (main thread): restart
        the Dask worker running it if it runs one task at a time (see
        ``cancel.restart_running``), in a thread of its own, since each
        step is a round trip to the scheduler.  Otherwise nothing more
        than the cooperative cancel already asked for."""
        keys = [dask.key for dask, pending in list(self._pending.items())
                if pending is pool_future]
        if not keys:
            return  # not handed to Dask, or over
        threading.Thread(
            target=self._restart, args=(keys[0],), name="offload-dask-force",
            daemon=True,
        ).start()

    def _restart(self, key: str) -> None:
        try:
            if isinstance(self._client, HelperClient):
                outcome = self._client.call(restart_running, key)
            else:
                outcome = restart_running(self._client, None, key)
        except Exception:  # noqa: BLE001 - the cooperative cancel stands
            logger.warning("offload: could not restart the Dask worker running %s",
                           key, exc_info=True)
            return
        logger.debug("offload: force-cancel of Dask task %s: %s", key, outcome)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting tasks; optionally cancel queued ones and wait."""
        self._shutdown = True
        if cancel_futures:
            with self._lock:
                waiting = list(self._waiting)
                self._waiting.clear()
            for job in waiting:
                self._finish_cancelled(job)
        if wait:
            # The pool futures, not Dask's: distributed.wait() needs a
            # default client, and the context's client is not one.
            pending = list(self._pending.values())
            _, not_done = concurrent.futures.wait(pending, timeout=SHUTDOWN_TIMEOUT)
            if not_done:
                logger.warning(
                    "offload: %d Dask task(s) still pending at shutdown", len(not_done)
                )

    # Private ------------------------------------------------------------------

    def _launch(self, job: _Job, reraise: bool = False) -> bool:
        """Submit ``job`` to Dask (main or callback thread).

        Returns True if the job now holds its slot; False if it ended here
        (cancelled while it waited, or refused by Dask).
        """
        if job.flag is not None and job.flag.is_set():
            # Cancelled while it waited here: it never runs.
            self._finish_cancelled(job)
            return False
        # Running from now on, as far as the executor can tell: a task in
        # Dask's hands is cancelled through its flag, not its pool future.
        if not job.pool_future.set_running_or_notify_cancel():
            self._forget(job)  # the executor withdrew it while it waited here
            return False
        try:
            self._send(job)
        except BaseException as exc:
            self._forget(job)
            if reraise:
                raise
            job.pool_future.set_exception(exc)
            return False
        return True

    def _send(self, job: _Job) -> None:
        """Hand ``job`` to Dask (main or callback thread); raises what Dask raises."""
        record = job.record
        # Dask hands each task the values of these futures, after the runner.
        shared = () if job.shared is None else job.shared[1]
        if record is not None and job.priority:
            dask_future = self._client.submit(
                run_task, job.function, *shared, key=record.dask_key, pure=False,
                priority=job.priority,
            )
        elif record is not None:
            dask_future = self._client.submit(
                run_task, job.function, *shared, key=record.dask_key, pure=False
            )
        else:
            dask_future = self._client.submit(
                job.function, *job.args, pure=False, **job.kwargs
            )
        if job.flag is not None:
            job.flag.dask_future = dask_future
        self._pending[dask_future] = job.pool_future
        self._since_forget += 1
        dask_future.add_done_callback(lambda future: self._done(job, future))

    def _done(self, job: _Job, dask_future: Any) -> None:
        """A Dask future ended (Dask's callback thread)."""
        pending = self._pending
        pending.pop(dask_future, None)
        if (job.shared is not None and dask_future.status == "cancelled"
                and self._resend(job)):
            return
        if not pending and self._since_forget >= BURST:
            self._since_forget = 0
            forget_task_keys()
            if self._after_burst is not None:
                self._after_burst()
        self._forget(job)
        pool_future = job.pool_future
        status = dask_future.status
        try:
            if status == "finished":
                result = None if job.record is not None else dask_future.result()
                pool_future.set_result(result)
            elif status == "cancelled":
                self._finish_cancelled(job)
            else:
                error = _explain(dask_future.exception(timeout=SHUTDOWN_TIMEOUT))
                pool_future.set_exception(error)
        except BaseException as exc:  # noqa: BLE001 - never leave it pending
            if not pool_future.done():
                pool_future.set_exception(exc)
        finally:
            self._release_slot()

    def _resend(self, job: _Job) -> bool:
        """Submit again a job that Dask dropped because the scattered data
        it waited for was lost with its worker (Dask's callback thread).

        Dask cannot recompute scattered data: when the only worker holding
        it dies (a crash, or a force-cancel restarting it), it forgets the
        data and the tasks waiting for it.  Those tasks had not started; they
        are sent again, with the data scattered again.  Returns False (the
        job ends as cancelled) if it was cancelled, or started, or the
        pool is shut down, or this happened too often.
        """
        record = job.record
        if (self._shutdown or record is None or record.started
                or job.resent >= RESEND_LIMIT
                or (job.flag is not None and job.flag.is_set())):
            return False
        tokens, futures = job.shared  # type: ignore[misc]
        job.resent += 1
        try:
            job.shared = (tokens, self._scatterer.renew(tokens, futures))  # type: ignore[union-attr]
            # A new Dask key: the old one may still be on its way out.
            job.router.untrack(record)
            record.dask_key = f"{record.dask_key.partition('~')[0]}~{job.resent}"
            job.router.track(record)
            self._send(job)
        except Exception:  # noqa: BLE001 - it ends as cancelled, as before
            logger.warning("offload: could not send a Dask task again after its "
                           "scattered argument was lost", exc_info=True)
            return False
        return True

    def _release_slot(self) -> None:
        """Give a finished job's slot to the next waiting job, if any."""
        while True:
            with self._lock:
                if not self._waiting:
                    self._in_flight -= 1
                    return
                job = self._waiting.popleft()
            if self._launch(job):
                return

    def _forget(self, job: _Job) -> None:
        shared = job.shared
        if shared is not None:
            job.shared = None
            self._scatterer.release(shared[0])  # type: ignore[union-attr]
        if job.flag is not None:
            job.flag.dask_future = None
        if job.router is not None:
            job.router.untrack(job.record)

    def _finish_cancelled(self, job: _Job) -> None:
        """End the pool future of a job that never ran."""
        self._forget(job)
        pool_future = job.pool_future
        if pool_future.cancel():
            pool_future.set_running_or_notify_cancel()
        elif not pool_future.done():
            # Handed to Dask, which cancelled it before it started.
            pool_future.set_exception(
                RuntimeError("the task was cancelled in Dask before it started")
            )


def _explain(error: BaseException | None) -> BaseException:
    """A clear error for a Dask future that failed outside the task."""
    if error is None:
        return RuntimeError("the Dask task failed without an exception")
    if isinstance(error, HelperLost):
        return error  # says what happened already
    name = type(error).__name__
    if name == "KilledWorker":
        message = (
            "the Dask worker(s) running this task died or were lost, and "
            f"Dask gave up on it ({name}: {error})"
        )
    else:
        message = (
            "Dask could not run this task on a worker (is offload installed "
            "there, and can the task's function and arguments be unpickled "
            f"on the worker?): {name}: {error}"
        )
    failure = RuntimeError(message)
    failure.__cause__ = error
    return failure
