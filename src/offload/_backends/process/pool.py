"""A pool of worker processes that notices when a worker dies.

What runs where::

    main thread                  reader thread (one per pool)         worker process
    -----------                  ----------------------------         --------------
    pool.submit(runner)
      pickle it (a failure
      names the culprit)
      an idle worker? send ─────────────────────────────────────────▶ run the item
      else queue it,             wait on every worker's pipe and
      ask for a worker           process sentinel
                                 chunk ─▶ messages to their routers ◀── chunks
                                          DONE ─▶ pool future done
                                          next queued item ─────────▶
                                 sentinel ─▶ the worker died: read what
                                   it sent, FAIL its item, start another

    writer thread (one per pool, started by the first large item)
      writes the items too large for a pipe to take at once ───────▶

Buffers of ``shm.THRESHOLD`` bytes or more (NumPy arrays) do not cross
the pipes at all: they are copied into shared memory as the item (or a
worker's chunk) is pickled, and the pickle names them (see
``offload._backends.process.shm``).

Each worker runs one item at a time and is sent the next only when it
reports the last one DONE, so the pool always knows which item a dead
worker was running, and an item never waits behind a long task while
another worker is idle.  So a worker's pipe of items is empty when it is
sent one: an item of up to ``INLINE_SEND_LIMIT`` bytes is written at once by
the thread that hands it out, without waiting; a larger one is left to the
writer thread, so that neither the submitting thread nor the reader waits
(with the pool's lock held) while the worker reads it.

Workers start on demand, in the reader thread (starting a process must not
stall the main thread), up to ``max_workers``.  A worker that dies before it
reported READY failed to start; after ``START_ATTEMPTS`` such failures in a
row the queued items fail with an explanation instead of trying forever.

Why this module is long: every method here reads or changes the one state
of the pool (its workers, their items in flight, the queue), under one
lock, from three threads (submitting, reader, writer); split into modules,
the lock and the invariants it keeps would have to be shared across them.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import functools
import itertools
import logging
import os
import pickle
import selectors
import signal
import threading
import time
import weakref
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import resource_tracker
from typing import Any

from offload._backends.main_script import main_script
from offload._backends.out_of_band import loads_out_of_band
from offload._backends.process.channel import DONE, KEPT, QUEUE_PUT, READY, RETIRE
from offload._backends.process.queue import deliver
from offload._backends.process.recycling import Limits
from offload._backends.process.router import dispatch
from offload._backends.process.segment_cache import drop_cache, mark_kept, open_cache
from offload._backends.process.shm import Outgoing, attach, split, unlink_made_by
from offload._backends.process.worker import worker_main
from offload._backends.remote import describe_exit, describe_unpicklable, dumps_item, error_text

logger = logging.getLogger("offload.contexts.process")

#: Worker start failures in a row after which queued items fail.
START_ATTEMPTS = 3

#: Seconds after which a worker process that has not reported READY is
#: logged as slow to start (it is still running the main script, perhaps
#: the application itself: a script without a __main__ guard that enters
#: its main loop before making a context).
START_WARNING = 10.0

#: Seconds a stopping worker gets to exit before it is terminated.
STOP_GRACE_PERIOD = 2.0

#: Seconds the interpreter waits, at exit, for items still running.
EXIT_GRACE_PERIOD = 2.0

#: Largest work item (bytes) written by the thread that hands it out; a
#: pipe takes this much at once (Linux: 64 KiB, macOS: 16 KiB at first).
INLINE_SEND_LIMIT = 16 * 1024 - 64

#: What a ready selector key stands for.
_WAKE, _RESULTS, _EXITED = "wake", "results", "exited"

_live_pools: weakref.WeakSet[ProcessWorkerPool] = weakref.WeakSet()
_pool_ids = itertools.count()


class _Job:
    """One submitted item: its pool future and, until sent, its bytes."""

    __slots__ = ("future", "data", "running", "priority", "segments")

    def __init__(
        self, future: concurrent.futures.Future, data: bytes | memoryview | None,
        priority: int = 0, segments: Outgoing | None = None,
    ) -> None:
        self.future = future
        self.data = data
        #: Higher starts first (``executor.options(priority=...)``).
        self.priority = priority
        #: The shared-memory segments of its large arguments, if any:
        #: released (kept for reuse, or unlinked) when the pool drops the
        #: job, that is once it is over.
        self.segments = segments
        #: Marked running in its future (once: a resend after a failed
        #: send keeps it so).
        self.running = False


class _Worker:
    """The main process's handle on one worker process."""

    __slots__ = (
        "process", "tasks", "results", "ready", "job", "poison", "stopping",
        "writing", "exited", "slow_at", "leaving",
    )

    def __init__(self, process: Any, tasks: Any, results: Any) -> None:
        self.process = process
        #: Write end of the pipe of work items.
        self.tasks = tasks
        #: Read end of the pipe of chunks.
        self.results = results
        self.ready = False
        #: The item it runs, or None when idle.
        self.job: _Job | None = None
        #: Why the running item must fail although the worker said DONE.
        self.poison: str | None = None
        self.stopping = False
        #: The writer thread is writing to ``tasks``: only it may close it.
        self.writing = False
        #: The reader has reaped the process.
        self.exited = False
        #: When (monotonic) to log that it is slow to start.
        self.slow_at = time.monotonic() + START_WARNING
        #: Being killed (force-cancel) or retiring (recycling): it takes no
        #: more work, and a replacement is on its way.
        self.leaving = False


class ProcessWorkerPool(concurrent.futures.Executor):
    """Runs picklable callables in up to ``max_workers`` worker processes.

    Parameters
    ----------
    mp_context : multiprocessing context
        Makes the processes and pipes (its start method decides how).
    max_workers : int, optional
        Most worker processes at once; default ``os.cpu_count()``.  A
        worker that is leaving (killed, or retiring) is replaced at once,
        so for a moment one more may run.
    kill_grace : float, optional
        Seconds between the SIGTERM and the SIGKILL that end a worker whose
        task is force-cancelled (:meth:`_offload_kill`).
    limits : Limits, optional
        When a worker retires (``max_tasks_per_worker``,
        ``max_worker_memory``); default: never.

    Notes
    -----
    ``submit`` and ``shutdown`` may be called from any thread.  A pool
    future fails only when something outside the callable broke: it could not
    be pickled, its worker died, the pool was terminated.  offload's task
    runners report everything else as messages.
    """

    def __init__(
        self,
        mp_context: Any,
        max_workers: int | None = None,
        *,
        kill_grace: float = 1.0,
        limits: Limits | None = None,
    ) -> None:
        self._mp_context = mp_context
        self._max_workers = max_workers or os.cpu_count() or 1
        self._kill_grace = kill_grace
        self._limits = limits
        #: Process group (the worker's pid) -> when (monotonic) to SIGKILL
        #: it, for the workers being killed.  Under the lock.
        self._killing: dict[int, float] = {}
        self._lock = threading.Lock()
        self._pending: deque[_Job] = deque()
        self._idle: list[_Worker] = []
        #: Every worker not yet reaped, by its pipe of chunks.
        self._by_results: dict[Any, _Worker] = {}
        #: Workers asked for but not yet started by the reader.
        self._wanted = 0
        self._start_failures = 0
        self._shutdown = False
        self._terminating = False
        self._work_ids = itertools.count()
        #: Workers import the main script, so its functions go by reference.
        self._main_by_reference = mp_context.get_start_method() in ("spawn", "forkserver")
        if mp_context.get_start_method() == "fork":
            # Forked workers must share the application's resource tracker
            # (spawn and forkserver pass it on): the segments they make for
            # results are registered there, and it unlinks what is left
            # should the application die.
            resource_tracker.ensure_running()
        #: (worker, job) for the writer thread, which starts on first use.
        self._outbox: deque[tuple[_Worker, _Job]] = deque()
        self._outbox_ready = threading.Condition(self._lock)
        self._writer: threading.Thread | None = None
        self._writer_done = False
        #: Workers started but not READY, not yet logged as slow.  Reader only.
        self._starting: set[_Worker] = set()
        open_cache()
        # The application holds the only write end: workers see end-of-file
        # on the read end once it is gone, however it died.
        self._alive_read, self._alive_write = mp_context.Pipe(duplex=False)
        self._wake_read, self._wake_write = os.pipe()
        #: What the reader waits on: the wake pipe, and each worker's pipe
        #: of chunks and process sentinel.  Reader thread only.
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_read, selectors.EVENT_READ, (_WAKE, None))
        self._reader = threading.Thread(
            target=self._read_loop, name=f"offload-process-reader-{next(_pool_ids)}",
            daemon=True,
        )
        self._reader.start()
        _live_pools.add(self)

    # Main thread (or any thread) ----------------------------------------------

    def submit(
        self, fn: Any, /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        if args or kwargs:
            fn = functools.partial(fn, *args, **kwargs)
        self._submit(future, fn)
        return future

    def _offload_submit(self, handle: Any, fn: Any) -> None:
        """Run ``fn()``, with the executor's ``handle`` as its pool future.

        ``handle`` has the methods of ``concurrent.futures.Future`` that the
        pool calls; see ``offload._executor.handles.TaskHandle``.
        """
        self._submit(handle, fn)

    def _offload_submit_priority(self, handle: Any, fn: Any, priority: int) -> None:
        """:meth:`_offload_submit` for a task of ``priority`` (higher
        starts first; equal priorities first in, first out)."""
        self._submit(handle, fn, priority)

    def _offload_kill(self, handle: Any) -> None:
        """Kill the worker running the task of ``handle``, and every process
        it started; nothing if no worker runs it (any thread).

        SIGTERM goes to the worker's process group now, SIGKILL
        ``kill_grace`` seconds later (the reader thread's timer).  The
        task fails (its worker died) once the reader has reaped the worker;
        a replacement starts at once.
        """
        with self._lock:
            for worker in self._by_results.values():
                job = worker.job
                if job is not None and job.future is handle:
                    break
            else:
                return  # not taken yet (withdrawn by cancel) or over already
            if worker.leaving and worker.process.pid in self._killing:
                return
            worker.leaving = True
            pid = worker.process.pid
            self._killing[pid] = time.monotonic() + self._kill_grace
            _signal_group(pid, signal.SIGTERM)
            self._replace()
        self._poke()

    def _submit(self, future: Any, fn: Any, priority: int = 0) -> None:
        if self._shutdown:
            raise RuntimeError("cannot submit to a worker process pool after shutdown")
        work_id = next(self._work_ids)
        # Large buffers go to shared memory as they are pickled: the one
        # copy of the arguments made here (a snapshot: the caller may
        # change them next), and no pipe write waits on the worker.
        segments = Outgoing(reuse=True)
        try:
            with segments:
                data = dumps_item(
                    work_id.to_bytes(8, "little"), fn,
                    main_by_reference=self._main_by_reference, buffers=segments,
                )
        except Exception as error:  # noqa: BLE001 - any pickling failure
            segments.discard()
            failure = TypeError(describe_unpicklable(fn, error))
            failure.__cause__ = error
            future.set_exception(failure)
            return
        if segments:
            segments.lend()
            data = bytes(data) + segments.trailer()
        job = _Job(future, data, priority, segments)
        with self._lock:
            if self._idle:
                worker = self._idle.pop()
                if not self._send(worker, job):
                    self._idle.append(worker)
            else:
                pending = self._pending
                if priority or (pending and pending[-1].priority < 0):
                    _insert_ranked(pending, job)
                else:
                    pending.append(job)
                self._want_worker()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking items; workers exit once the queued items have run."""
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                cancelled, self._pending = self._pending, deque()
                for job in cancelled:
                    job.future.cancel()
        self._poke()
        if wait:
            self._reader.join()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the pool to end; True if it did."""
        self._reader.join(timeout)
        return not self._reader.is_alive()

    def terminate(self, reason: str = "the pool was terminated") -> None:
        """Kill every worker now, with the processes its task started; their
        items and the queued ones fail.  Any thread."""
        with self._lock:
            self._shutdown = True
            self._terminating = True
            abandoned, self._pending = self._pending, deque()
            for worker in self._by_results.values():
                worker.poison = reason
                _kill(worker.process)
                if worker.ready:  # it leads its own process group by then
                    _signal_group(worker.process.pid, signal.SIGKILL)
        for job in abandoned:
            _settle(job.future, False, RuntimeError(f"{reason} before this task started"))
        self._poke()

    # Private: called with the lock held -----------------------------------------

    def _send(self, worker: _Worker, job: _Job) -> bool:
        """Give ``job`` to ``worker``; False if the job was withdrawn, so
        the worker is still free."""
        # Marked running before it is sent: once it may run, cancelling its
        # pool future must fail (the task's flag cancels it from then on).
        if not job.running:
            if not job.future.set_running_or_notify_cancel():
                return False
            job.running = True
        worker.job = job
        assert job.data is not None
        if len(job.data) > INLINE_SEND_LIMIT:
            self._outbox.append((worker, job))
            self._outbox_ready.notify()
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name=f"{self._reader.name}-writer",
                    daemon=True,
                )
                self._writer.start()
            return True
        try:
            worker.tasks.send_bytes(job.data)
        except OSError:
            self._not_delivered(worker, job)
            return True
        job.data = None
        return True

    def _not_delivered(self, worker: _Worker, job: _Job) -> None:
        """The worker died before it got ``job``; its sentinel will tell the
        reader.  The item never reached it: run it elsewhere."""
        if worker.job is not job:
            return  # the reader found the worker dead first, and failed it
        worker.job = None
        if self._terminating:
            _settle(job.future, False, RuntimeError(
                f"{worker.poison or 'the pool was terminated'} before this task started"
            ))
            return
        self._pending.appendleft(job)
        self._want_worker()

    def _worker_free(self, worker: _Worker) -> None:
        if worker.leaving:
            return  # killed or retiring: its replacement takes the work
        while self._pending:
            if self._send(worker, self._pending.popleft()):
                return
        if self._shutdown:
            self._stop_worker(worker)
        else:
            self._idle.append(worker)

    def _want_worker(self) -> None:
        """Ask the reader for one more worker, if the queue needs one."""
        starting = self._wanted + sum(1 for w in self._by_results.values() if not w.ready)
        if starting >= len(self._pending):
            return
        if self._staying() + self._wanted >= self._max_workers:
            return
        self._wanted += 1
        self._poke()

    def _replace(self) -> None:
        """Start a worker in place of one that is leaving (killed or
        retiring), so that the pool stays warm."""
        if self._shutdown or self._terminating:
            return
        if self._staying() + self._wanted < self._max_workers:
            self._wanted += 1
            self._poke()

    def _staying(self) -> int:
        """Workers not reaped and not leaving."""
        return sum(1 for worker in self._by_results.values() if not worker.leaving)

    def _stop_worker(self, worker: _Worker) -> None:
        if not worker.stopping:
            worker.stopping = True
            try:
                worker.tasks.send_bytes(b"")
            except OSError:
                pass

    def _poke(self) -> None:
        try:
            os.write(self._wake_write, b"x")
        except OSError:
            pass  # the reader has ended

    # Writer thread ---------------------------------------------------------------

    def _write_loop(self) -> None:
        """Write large items to their workers, without the lock held."""
        while True:
            with self._lock:
                while not self._outbox and not self._writer_done:
                    self._outbox_ready.wait()
                if not self._outbox:
                    return
                worker, job = self._outbox.popleft()
                data = job.data
                worker.writing = True
            try:
                worker.tasks.send_bytes(data)
                delivered = True
            except (OSError, ValueError):  # a dead worker, or its pipe closed
                delivered = False
            del data
            with self._lock:
                worker.writing = False
                if delivered:
                    job.data = None
                else:
                    self._not_delivered(worker, job)
                if worker.exited:
                    worker.tasks.close()

    def _stop_writer(self) -> None:
        with self._lock:
            self._writer_done = True
            self._outbox_ready.notify()
            writer = self._writer
        if writer is not None:
            writer.join()

    # Reader thread ---------------------------------------------------------------

    def _read_loop(self) -> None:
        try:
            self._serve()
        except BaseException:  # noqa: BLE001 - never die silently
            logger.exception("offload process pool reader failed; terminating the pool")
            self._fail_everything("the worker pool's reader thread failed")
        finally:
            with self._lock:
                # Whatever a killed worker left behind goes now.
                killing, self._killing = self._killing, {}
            for pid in killing:
                _signal_group(pid, signal.SIGKILL)
            self._stop_writer()
            self._close_pipes()
            drop_cache()

    def _serve(self) -> None:
        stopping_since: float | None = None
        while True:
            with self._lock:
                wanted = self._wanted
                finished = self._shutdown and not self._pending and all(
                    worker.job is None for worker in self._by_results.values()
                )
                if finished:
                    for worker in self._by_results.values():
                        self._stop_worker(worker)
                    self._idle.clear()
            for _ in range(wanted):
                self._start_worker()
            if finished:
                if not self._by_results:
                    return
                if stopping_since is None:
                    stopping_since = time.monotonic()
                elif time.monotonic() - stopping_since > STOP_GRACE_PERIOD:
                    for worker in list(self._by_results.values()):
                        _kill(worker.process)
            timeout = self._until_slow_start()
            if self._killing:
                until_kill = self._until_kill()
                if until_kill is not None:
                    timeout = until_kill if timeout is None else min(timeout, until_kill)
            if stopping_since is not None:
                timeout = 0.1 if timeout is None else min(timeout, 0.1)
            ready = self._selector.select(timeout)
            exited = []
            for key, _ in ready:
                what, worker = key.data
                if what is _RESULTS:
                    try:
                        data = worker.results.recv_bytes()
                    except (EOFError, OSError):
                        continue  # it died: its sentinel says so
                    self._on_chunk(worker, data)
                elif what is _EXITED:
                    exited.append(worker)
                else:
                    os.read(self._wake_read, 4096)
            # After the chunks, so that what a worker sent before it died
            # comes first.
            for worker in exited:
                self._on_exit(worker)

    def _until_slow_start(self) -> float | None:
        """Seconds until a starting worker is due to be logged as slow
        (logging those that are due); None if no worker is starting."""
        if not self._starting:
            return None
        now = time.monotonic()
        for worker in [w for w in self._starting if w.slow_at <= now]:
            self._starting.discard(worker)
            logger.warning(
                "worker process %s has not started after %.0f s; a new worker "
                "runs the main script (%s) first, and a script without an if "
                "__name__ == '__main__': guard runs the whole application there",
                worker.process.pid, START_WARNING, main_script() or "none",
            )
        return min((w.slow_at - now for w in self._starting), default=None)

    def _until_kill(self) -> float | None:
        """SIGKILL the process groups whose grace is over; seconds until
        the next is due, or None."""
        now = time.monotonic()
        with self._lock:
            for pid, at in list(self._killing.items()):
                if at <= now:
                    del self._killing[pid]
                    _signal_group(pid, signal.SIGKILL)
            return min((at - now for at in self._killing.values()), default=None)

    def _start_worker(self) -> None:
        context = self._mp_context
        task_read, task_write = context.Pipe(duplex=False)
        result_read, result_write = context.Pipe(duplex=False)
        process = context.Process(
            target=worker_main,
            args=(task_read, result_write, self._alive_read, self._limits),
            name="offload-worker",
        )
        try:
            process.start()
        except BaseException as error:  # noqa: BLE001 - report, do not die
            for connection in (task_read, task_write, result_read, result_write):
                connection.close()
            with self._lock:
                self._wanted -= 1
            self._fail_pending(f"could not start a worker process: {error_text(error)}")
            return
        # The child has its own copies now.
        task_read.close()
        result_write.close()
        worker = _Worker(process, task_write, result_read)
        self._selector.register(result_read, selectors.EVENT_READ, (_RESULTS, worker))
        self._selector.register(process.sentinel, selectors.EVENT_READ, (_EXITED, worker))
        with self._lock:
            self._wanted -= 1
            self._by_results[result_read] = worker
        self._starting.add(worker)
        logger.debug("worker process %s started", process.pid)

    def _on_chunk(self, worker: _Worker, data: bytes) -> None:
        buffers = None
        try:
            data, listing = split(data)
            if listing is not None:
                # Mapped and unlinked first: whatever fails next, the
                # segments go with their last mapping.
                buffers = attach(listing, unlink=True)
            messages, controls = pickle.loads(data)
        except BaseException as error:  # noqa: BLE001
            # Without its controls the item's end is unknown: end the worker,
            # which fails the item, rather than wait for it forever.
            worker.poison = (
                "the main process could not unpickle what the worker process "
                f"sent: {error_text(error)}"
            )
            _kill(worker.process)
            return
        done = None
        for record in controls:
            if record[0] == RETIRE:
                # Before its DONE, so that it is given no next item.
                with self._lock:
                    worker.leaving = True
                    if worker in self._idle:
                        self._idle.remove(worker)
                    self._replace()
            elif record[0] == KEPT:
                # Before the item is dropped, which recycles its segments.
                mark_kept(record[1])
            elif record[0] == DONE:
                # Give the worker its next item before anything else, so
                # that it computes while this thread delivers.
                done = (record[2], record[3], self._next_item(worker))
        if messages:
            try:
                if buffers is None:
                    records = pickle.loads(messages)
                else:
                    records = loads_out_of_band(messages, buffers)
            except BaseException as error:  # noqa: BLE001
                poison = (
                    "the main process could not unpickle a message this task "
                    f"sent: {error_text(error)}"
                )
                if done is not None:
                    done = (False, RuntimeError(poison), done[2])
                else:
                    worker.poison = poison
            else:
                dispatch(records)
        if done is not None:
            ok, value, job = done
            if job is not None:
                _settle(job.future, ok, value)
        for record in controls:
            kind = record[0]
            if kind == QUEUE_PUT:
                try:
                    deliver(record[1], record[2])
                except BaseException:  # noqa: BLE001
                    logger.exception("could not put an item from a worker on its queue")
            elif kind == READY:
                self._starting.discard(worker)
                with self._lock:
                    worker.ready = True
                    self._start_failures = 0
                    self._worker_free(worker)

    def _next_item(self, worker: _Worker) -> _Job | None:
        """The worker finished its item: start its next; return the finished one.

        A poisoned item's failure replaces its outcome (see ``poison``).
        """
        job = worker.job
        if job is None:
            logger.error("offload internal error: a worker reported an item it was not given")
            return None
        with self._lock:
            worker.job = None
            if not self._terminating:
                self._worker_free(worker)
        poison, worker.poison = worker.poison, None
        if poison is not None:
            _settle(job.future, False, RuntimeError(poison))
        return job

    def _on_exit(self, worker: _Worker) -> None:
        # Whatever it sent before it died still counts: read it first.
        try:
            while worker.results.poll():
                self._on_chunk(worker, worker.results.recv_bytes())
        except (EOFError, OSError):
            pass
        process = worker.process
        process.join()
        # Results it had put in shared memory and not yet sent.
        unlink_made_by(process.pid)
        self._starting.discard(worker)
        self._selector.unregister(worker.results)
        self._selector.unregister(process.sentinel)
        with self._lock:
            del self._by_results[worker.results]
            if worker in self._idle:
                self._idle.remove(worker)
            job, worker.job = worker.job, None
            started = worker.ready
            if not started and not worker.stopping:
                self._start_failures += 1
            give_up = self._start_failures >= START_ATTEMPTS
            if self._pending and not self._terminating and not give_up:
                self._want_worker()
            worker.exited = True
            if not worker.writing:  # else the writer closes it when done
                worker.tasks.close()
        worker.results.close()
        how = describe_exit(process.exitcode)
        logger.debug("worker process %s %s", process.pid, how)
        if job is not None:
            if worker.poison is not None:
                message = f"{worker.poison} (the worker process {process.pid} {how})"
            else:
                message = (
                    f"the worker process (pid {process.pid}) running this task "
                    f"died: it {how}"
                )
            _settle(job.future, False, BrokenProcessPool(message))
        if give_up:
            self._start_failures = 0
            self._fail_pending(
                f"worker processes fail to start (the last one {how}); if the "
                "program's main module starts work at import time, guard it "
                "with if __name__ == '__main__':"
            )

    def _fail_pending(self, reason: str) -> None:
        with self._lock:
            failed, self._pending = self._pending, deque()
        for job in failed:
            _settle(job.future, False, BrokenProcessPool(reason))

    def _fail_everything(self, reason: str) -> None:
        with self._lock:
            self._shutdown = True
            workers = list(self._by_results.values())
        for worker in workers:
            _kill(worker.process)
            worker.process.join(1.0)
            if worker.job is not None:
                _settle(worker.job.future, False, BrokenProcessPool(reason))
        self._fail_pending(reason)

    def _close_pipes(self) -> None:
        self._selector.close()
        self._alive_write.close()
        self._alive_read.close()
        os.close(self._wake_read)
        os.close(self._wake_write)


def _insert_ranked(pending: deque[_Job], job: _Job) -> None:
    """Queue ``job`` after every job of its priority or higher (the queue
    is in order of priority, then of submission).  Under the pool's lock."""
    index = len(pending)
    while index and pending[index - 1].priority < job.priority:
        index -= 1
    pending.insert(index, job)


def _signal_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to a worker's process group (its pid: each worker
    leads its own, see ``worker_main``), if any process of it is left."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass  # every process of the group is gone


def _kill(process: Any) -> None:
    try:
        process.kill()
    except (OSError, ValueError, AttributeError):
        pass  # already gone, or never started


def _settle(future: concurrent.futures.Future, ok: bool, value: Any) -> None:
    """Complete ``future`` unless it is already done (cancelled, or failed
    by a termination that raced with the worker's report)."""
    try:
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
    except concurrent.futures.InvalidStateError:
        pass


@atexit.register
def _at_exit() -> None:
    # Let running items finish within the grace period, then kill what is
    # left: a stuck task must not hold the interpreter's exit (multiprocessing
    # joins every child process at exit).
    deadline = time.monotonic() + EXIT_GRACE_PERIOD
    pools = list(_live_pools)
    for pool in pools:
        pool.shutdown(wait=False)
    for pool in pools:
        if not pool.join(max(0.0, deadline - time.monotonic())):
            pool.terminate("the application exited")
            pool.join(1.0)
