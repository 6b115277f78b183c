"""What runs on a Dask worker: offload's task runners, and the helper's tasks.

Both functions are submitted to Dask by reference, so a worker imports this
module (and, through it, the cancel flags' worker side and the outbox) to
run them.
"""

from __future__ import annotations

import pickle

from offload._backends.dask.cancel import task_ended, task_starting
from offload._backends.dask.outbox import DaskSender
from offload._backends.remote import dumps
from offload._routing.protocol import TaskRunner


def run_task(runner: TaskRunner) -> None:
    """Run one task on a Dask worker (the worker's task thread)."""
    from distributed import get_worker

    send = runner.send
    if type(send) is DaskSender:
        runner.send = send.bind(get_worker())
    key = getattr(runner.cancel_flag, "key", None)
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


def run_pickled(data: bytes) -> bytes | None:
    """Run a pickled ``(function, args, kwargs)`` (on a Dask worker).

    Returns the pickled result (None for None), which the helper passes on
    without unpickling it.
    """
    function, args, kwargs = pickle.loads(data)
    result = function(*args, **kwargs)
    return None if result is None else dumps(result)
