"""The main function of a worker process.

What runs in a worker process::

    main thread      recv work item ─▶ unpickle ─▶ run ─▶ DONE record (flushes
                     the task's messages first) ─▶ recv next ...
    flush thread     sends messages that waited FLUSH_DELAY (process_channel)
    watchdog thread  exits the process at once if the application is gone;
                     unmaps kept segments the application let go of

A work item arrives as 8 bytes of work id and the pickled callable, with
its large buffers in shared memory (see ``offload._backends.process.shm``).  The
worker announces itself with a READY record before taking work, so that the
pool can tell a worker that failed to start from one that died in a task.

The worker ignores SIGINT: Ctrl-C in a terminal reaches the whole process
group, and it is for the application to decide what its workers do.

A task may fork the worker (directly, or through a library).  The child has
copies of the worker's pipes and of this loop: should it return from the
task instead of ending with ``os._exit()``, it would report to the
application as the worker and take the worker's next item.  So a forked
child never sends (its copy of the channel is dropped at the fork), and one
that comes back into this loop is ended there, saying so on its standard
error; the worker's own result stands.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import traceback
from typing import Any

from offload._backends import forwarding
from offload._backends.main_script import MP_MAIN
from offload._backends.out_of_band import loads_out_of_band
from offload._backends.process import worker_segments
from offload._backends.process.channel import (
    DONE,
    KEPT,
    READY,
    RETIRE,
    Channel,
    end_forked_child,
    forget_in_forked_child,
    install,
)
from offload._backends.process.flags import detach_all
from offload._backends.process.shm import attach, split
from offload._backends.remote import error_text

#: Seconds between two looks at the parent process id by the watchdog.
WATCH_INTERVAL = 0.5


def worker_main(
    task_connection: Any, result_connection: Any, alive_connection: Any, limits: Any = None
) -> None:
    """Run work items until told to stop or until the application is gone.

    Parameters
    ----------
    task_connection : Connection
        Read end of the pipe of work items; an empty message means stop.
    result_connection : Connection
        Write end of the pipe of chunks to the main process.
    alive_connection : Connection
        Read end of a pipe that the application never writes to: it reads
        as end-of-file once the application has exited, whatever the way.
    limits : Limits, optional
        When to retire (see ``recycling``); None: serve until told to stop.
    """
    # A process group of its own, so that a force-cancel reaches every
    # process the task starts (os.killpg, in the pool).
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _start_watchdog(alive_connection, os.getppid())
    channel = Channel(result_connection)
    install(channel)
    pid = os.getpid()
    os.register_at_fork(after_in_child=lambda: forget_in_forked_child(pid))
    channel.control((READY, pid))
    loads = pickle.loads
    while True:
        try:
            data = task_connection.recv_bytes()
        except (EOFError, OSError):
            break
        if not data:
            break
        work_id = int.from_bytes(data[:8], "little")
        try:
            body, listing = split(data)
            if listing is None:
                function = loads(memoryview(data)[8:])
            else:
                # Large arguments are in shared memory (the application's
                # snapshot, ours alone): mapped, not copied.  First unmap
                # the kept segments the application has let go of (see
                # worker_segments; the watchdog also does, twice a second).
                worker_segments.prune()
                function = loads_out_of_band(body[8:], attach(listing, unlink=False))
        except BaseException as error:  # noqa: BLE001 - reported, never lost
            failure = RuntimeError(
                f"the worker process could not unpickle the task: {error_text(error)}"
                + _main_hint(error)
            )
            channel.control((DONE, work_id, False, failure))
            continue
        del data, body
        # Its warnings and log records go to the application, on its channel.
        forward = forwarding.settings_of(function)
        if forward is not None:
            forwarding.starting(function, forward, per_thread=False)
        try:
            value = function()
        except BaseException as error:  # noqa: BLE001 - reported, never lost
            if os.getpid() != pid:
                end_forked_child("raised from", "".join(traceback.format_exception(error)), 1)
            ok, value = False, error
        else:
            if os.getpid() != pid:
                end_forked_child("returned from")
            ok = True
        if forward is not None:
            forwarding.ended(function, per_thread=False)
        if listing is not None:
            # Drop the task (and its arguments) before saying DONE: the
            # application reuses their segments then, unless we still map
            # them.
            function = None
            kept = worker_segments.still_mapped(listing[0])
            if kept:
                channel.control((KEPT, kept))
        # See recycling; the application's segments kept mapped are its memory.
        retire = limits is not None and limits.reached(worker_segments.kept_bytes)
        if retire:
            channel.control((RETIRE, pid))
        channel.control((DONE, work_id, ok, value))
        # Drop the task (and its arguments) before waiting for the next one.
        function = value = None
        if retire:
            break
    install(None)
    try:
        channel.close()
    except OSError:
        pass
    detach_all()


def _main_hint(error: BaseException) -> str:
    """Advice when the task names what the worker's main module lacks."""
    if isinstance(error, AttributeError) and MP_MAIN in str(error):
        return (
            " (a function or class of the main script that worker processes "
            "do not have: define it at the top level of the script, not under "
            "if __name__ == '__main__':)"
        )
    return ""


def _start_watchdog(alive_connection: Any, parent_pid: int) -> None:
    thread = threading.Thread(
        target=_watch,
        args=(alive_connection, parent_pid),
        name="offload-watchdog",
        daemon=True,
    )
    thread.start()


def _watch(alive_connection: Any, parent_pid: int) -> None:
    """Exit the process when the application is gone (watchdog thread).

    Two signs: end-of-file on the alive pipe (the application held its only
    write end; start methods "spawn" and "forkserver"), and a new parent
    process id (the parent died and the worker was adopted; covers "fork",
    where sibling workers also hold the write end).
    """
    while True:
        try:
            if alive_connection.poll(WATCH_INTERVAL):
                break  # the application never writes: this is end-of-file
        except (EOFError, OSError):
            break
        if os.getppid() != parent_pid:
            break
        try:
            worker_segments.prune()
        except Exception:  # noqa: BLE001 - nothing may stop the watchdog
            pass
    os._exit(0)
