"""What runs on a Dask worker: offload's task runners, and the helper's tasks.

Both functions are submitted to Dask by reference, so a worker imports this
module (and, through it, the cancel flags' worker side and the outbox) to
run them.
"""

from __future__ import annotations

import pickle
from typing import Any

from offload._backends import forwarding
from offload._backends.dask.cancel import task_ended, task_starting
from offload._backends.dask.outbox import DaskSender
from offload._backends.dask.shared import restore
from offload._backends.remote import dumps
from offload._routing.protocol import TaskRunner


def run_task(runner: TaskRunner, *shared: bytes) -> None:
    """Run one task on a Dask worker (the worker's task thread).

    ``shared``: the task's scattered arguments, pickled, that Dask fetched
    for it (see :mod:`.shared`).
    """
    from distributed import get_worker

    if shared:
        restore(runner.task, shared)
    send = runner.send
    # Asked of the sender before it is bound: the bound one is the outbox's.
    forward = forwarding.settings_of(runner)
    if type(send) is DaskSender:
        runner.send = send.bind(get_worker())
    key = getattr(runner.cancel_flag, "key", None)
    if forward is not None:
        # Several tasks may run at once on this worker: per thread.
        forwarding.starting(runner, forward, per_thread=True)
    try:
        if key is None:
            runner()
            return
        # While the runner runs, a cancellation of it leaves its Dask future
        # alone (see dask_cancel.mark_cancelled).
        task_starting(key)
        try:
            runner()
        finally:
            task_ended(key)
    finally:
        if forward is not None:
            forwarding.ended(runner, per_thread=True)


def run_pickled(data: bytes, *shared: Any) -> bytes | None:
    """Run a pickled ``(function, args, kwargs)`` (on a Dask worker), with
    the values of ``shared`` (scattered data) after ``args``.

    Returns the pickled result (None for None), which the helper passes on
    without unpickling it.
    """
    function, args, kwargs = pickle.loads(data)
    result = function(*args, *shared, **kwargs)
    return None if result is None else dumps(result)
