"""The protocol a task speaks to its future, and the worker-side runner.

What runs where::

    main thread                          worker (thread, process, Dask)
    -----------                          ------------------------------
    executor.submit(spec)
      runner = TaskRunner(...)  ───────▶ runner()
                                           cancelled? ── yes ─▶ ABANDONED
                                           STARTED
                                           task(send, cancelled)
                                             send(msg) ─▶ (kind, arg)
                                           RETURNED result | RAISED info
    router delivers each (task_id, message) to future.receive(message)

Every message of a task, its final one included, travels on one channel, so
a task's end can never overtake its own messages.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

#: Control kinds.  User message kinds are strings; these are ints.
STARTED = 0  #: arg None: the task's callable is about to run.
RETURNED = 1  #: arg: the task's return value.
RAISED = 2  #: arg: (exception 3-tuple of str, exception object or None).
ABANDONED = 3  #: arg None: cancelled before it started; the callable never ran.
CRASHED = 4  #: arg: (3-tuple, exception or None): lost outside the task itself.
#: arg: ("warning" | "log", payload): what a task in another process warned
#: or logged, said again on the main thread (``offload._routing.forwarded``).
#: Neither a state change nor final: futures handle it before their table.
FORWARDED = 5
#: arg: (3-tuple, TaskTimedOut): the task overran its time limit; injected
#: by the executor's timer, its end follows.
TIMED_OUT = 6

CONTROL_NAMES = {
    STARTED: "started",
    RETURNED: "returned",
    RAISED: "raised",
    ABANDONED: "abandoned",
    CRASHED: "crashed",
    FORWARDED: "forwarded",
    TIMED_OUT: "timed out",
}

#: Kinds after which a task sends nothing more.
FINAL_KINDS = frozenset({RETURNED, RAISED, ABANDONED, CRASHED})

STARTED_MESSAGE = (STARTED, None)
ABANDONED_MESSAGE = (ABANDONED, None)

#: ``send(task_id, message)``: how a runner hands a message to its router.
Send = Callable[[int, tuple], None]


def exception_type_name(exc_type: type) -> str:
    """Bare name for built-ins, module-qualified otherwise (``struct.error``)."""
    module = getattr(exc_type, "__module__", None)
    name = getattr(exc_type, "__qualname__", exc_type.__name__)
    if module in (None, "builtins", "__builtin__"):
        return name
    if module == "__mp_main__":
        # The main script, as a worker process runs it: the same classes
        # the application knows as __main__'s.
        module = "__main__"
    return f"{module}.{name}"


def marshal_exception(exc: BaseException) -> tuple[str, str, str]:
    """Describe ``exc`` as the 3-tuple of strings that futures expose.

    Never raises, even for an exception whose ``str()`` raises.
    """
    exc_type = type(exc)
    try:
        message = str(exc)
    except BaseException as str_error:  # noqa: BLE001 - anything str() raises
        message = (
            f"<str() of this {exc_type.__name__} failed: "
            f"{type(str_error).__name__}>"
        )
    try:
        formatted = "".join(
            traceback.format_exception(exc_type, exc, exc.__traceback__)
        )
    except BaseException:  # noqa: BLE001
        formatted = f"{exception_type_name(exc_type)}: {message}\n"
    return (exception_type_name(exc_type), message, formatted)


def raised_message(exc: BaseException, kind: int = RAISED) -> tuple:
    """The message that reports ``exc`` (kind RAISED or CRASHED)."""
    return (kind, (marshal_exception(exc), exc))


class TaskRunner:
    """Runs one task in a worker and reports its life as messages.

    A plain object with plain attributes so that it pickles whenever the task,
    the sender and the cancel flag do (process and Dask contexts).

    Parameters
    ----------
    task_id : int
        The id the router knows the task's future by.
    task : callable
        ``task(send, cancelled)``, from ``ITaskSpecification.task()``.
    send : callable
        ``send(task_id, message)``, the context's sender.
    cancel_flag : object
        Has ``is_set()``: true once cancellation was asked for.
    """

    __slots__ = ("task_id", "task", "send", "cancel_flag")

    def __init__(self, task_id: int, task: Any, send: Send, cancel_flag: Any) -> None:
        self.task_id = task_id
        self.task = task
        self.send = send
        self.cancel_flag = cancel_flag

    def __getstate__(self) -> tuple:
        return (self.task_id, self.task, self.send, self.cancel_flag)

    def __setstate__(self, state: tuple) -> None:
        self.task_id, self.task, self.send, self.cancel_flag = state

    def __call__(self) -> None:
        task_id = self.task_id
        send = self.send
        cancelled = self.cancel_flag.is_set
        if cancelled():
            send(task_id, ABANDONED_MESSAGE)
            return

        def task_send(message: tuple) -> None:
            send(task_id, message)

        # Sent as close to the task as it can be: for a short task, the
        # main thread that this message wakes finds the task's end queued.
        send(task_id, STARTED_MESSAGE)
        try:
            result = self.task(task_send, cancelled)
        except BaseException as exc:  # noqa: BLE001 - reported, never lost
            send(task_id, raised_message(exc))
        else:
            send(task_id, (RETURNED, result))
