"""Warnings and log records of tasks in other processes, sent to the application.

Worker side, shared by the process and Dask backends.  What runs where::

    worker process (task thread, or a thread the task started)
      warnings.warn(...)  ─▶ filters ("always" first: the application's
                              filters decide) ─▶ showwarning hook
      logger.info(...)    ─▶ root logger's ForwardingHandler
         task running here?  no ─▶ as without offload (stderr)
                             yes ─▶ send((FORWARDED, (kind, payload)))
                                    on the task's own channel, in order
                                    with its other messages
    main thread: the future's receive ─▶ offload._routing.forwarded.reissue

Nothing is installed until the first task whose sender asks for
forwarding starts in the process, and a task costs two attribute look-ups
and a store at its start and end; only a warning or a record costs more.

The payloads are plain tuples and dicts of ``str``, ``int`` and ``float``,
so they pickle, and unpickle in the application, whatever the task's
warning category or record held (a log record's message is formatted
here, its exception and stack formatted to text, as
``logging.handlers.QueueHandler`` does).
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from typing import Any

from offload._routing.protocol import FORWARDED

#: The task running on each thread of a Dask worker (several run at once).
_by_thread: dict[int, Any] = {}
#: The task a process worker runs (one at a time): also the current task
#: of any thread that task started.
_sole: list[Any] = [None]
#: (task id, warning key) of the warnings already sent for the running
#: tasks: a warning repeated in a loop is sent once per task.
_sent: set[tuple] = set()
#: Warnings shown outside any task, by location: shown once each, as the
#: default filter would (the "always" filter below sees them all).
_shown: set[tuple] = set()
#: showwarning as it was before ours; set once installed.
_original_showwarning: list[Any] = []
_install_lock = threading.Lock()

#: Record attributes that are never sent (rebuilt or formatted instead).
_DROPPED = frozenset({"args", "exc_info", "msg", "message"})


#: This process's id (a forked child updates it).
_pid = [os.getpid()]


def _forked() -> None:
    # A child that a task forked is no worker: it cannot send the task's
    # messages, so its warnings and records stay in it, as without offload.
    _pid[0] = os.getpid()
    _sole[0] = None
    _by_thread.clear()


os.register_at_fork(after_in_child=_forked)


def check_forward(
    context: str, forward_warnings: Any, forward_logging: Any
) -> tuple[bool, bool]:
    """A context's ``(forward_warnings, forward_logging)``, checked."""
    for name, value in (
        ("forward_warnings", forward_warnings), ("forward_logging", forward_logging)
    ):
        if not isinstance(value, bool):
            raise TypeError(
                f"{context}({name}=...) must be True or False, got {value!r}"
            )
    return (forward_warnings, forward_logging)


def on_the_wire(config: tuple[bool, bool] | None) -> tuple | None:
    """What a sender carries to a worker, from the context's
    ``(forward_warnings, forward_logging)``: ``(forward warnings, level or
    None, application's process id)``, or None for neither.

    Called as the sender is pickled with each task (main thread): the
    level is the application's root logger's at submission, which the
    worker's root logger then takes.
    """
    if config is None:
        return None
    forward_warnings, forward_logging = config
    if not (forward_warnings or forward_logging):
        return None
    level = logging.getLogger().getEffectiveLevel() if forward_logging else None
    return (forward_warnings, level, _pid[0])


def settings_of(runner: Any) -> tuple | None:
    """What ``runner``'s sender asks to forward (:func:`on_the_wire`), or
    None: it asks for nothing, is no task runner, or runs in the
    application's own process (a Dask worker thread there), where warnings
    and records reach the application's filters and handlers directly.
    Worker side."""
    forward = getattr(getattr(runner, "send", None), "forward", None)
    if forward is None or forward[2] == _pid[0]:
        return None
    return forward


def starting(runner: Any, forward: tuple, per_thread: bool) -> None:
    """``runner`` starts on this thread: forward what it warns and logs.

    ``forward`` is :func:`settings_of`'s answer.  ``per_thread`` for a
    worker that runs several tasks at once (Dask); a process worker runs
    one, and then threads the task started are covered too.
    """
    if not _original_showwarning:
        _install()
    level = forward[1]
    if level is not None:
        root = logging.getLogger()
        # The application's root level, as it was at submission: records
        # below it are not even made.
        if root.level != level:
            root.setLevel(level)
    if per_thread:
        _by_thread[threading.get_ident()] = (runner, forward)
    else:
        _sole[0] = (runner, forward)


def ended(runner: Any, per_thread: bool) -> None:
    """``runner`` is over (same thread as :func:`starting`)."""
    if per_thread:
        _by_thread.pop(threading.get_ident(), None)
    else:
        _sole[0] = None
    if _sent:
        task_id = runner.task_id
        for key in [key for key in _sent if key[0] == task_id]:
            _sent.discard(key)


def task_label(runner: Any) -> str:
    """``"module.function (task 12)"``: what ``record.offload_task`` says."""
    task = runner.task
    function = getattr(task, "callable", task)
    module = getattr(function, "__module__", None)
    name = getattr(function, "__qualname__", None)
    if name is None:
        name = type(function).__qualname__
    if module == "__mp_main__":
        module = "__main__"
    where = f"{module}.{name}" if module else name
    return f"{where} (task {runner.task_id})"


def _current() -> tuple | None:
    return _by_thread.get(threading.get_ident()) or _sole[0]


# Installed once per worker process ----------------------------------------------


def _install() -> None:
    with _install_lock:
        if _original_showwarning:
            return
        _original_showwarning.append(warnings.showwarning)
        warnings.showwarning = _showwarning
        # First, so that the worker's defaults (DeprecationWarning ignored
        # outside __main__...) hide nothing from the application's filters;
        # what a task or library adds later still comes before it.
        warnings.simplefilter("always")
        logging.getLogger().addHandler(ForwardingHandler())


def _showwarning(
    message: Any, category: type, filename: str, lineno: int, file: Any = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` in a worker: forward a task's warnings."""
    current = _current()
    text = str(message)
    key = (category, text, filename, lineno)
    if current is None or not current[1][0]:
        if key in _shown:
            return
        if len(_shown) < 10_000:
            _shown.add(key)
        _original_showwarning[0](message, category, filename, lineno, file, line)
        return
    runner = current[0]
    sent_key = (runner.task_id, key)
    if sent_key in _sent:
        return
    _sent.add(sent_key)
    categories = tuple(
        (klass.__module__, klass.__qualname__)
        for klass in category.__mro__
        if issubclass(klass, Warning)
    )
    module = _module_of(filename)
    try:
        runner.send(
            runner.task_id,
            (FORWARDED, ("warning", (categories, text, filename, lineno, module))),
        )
    except Exception:  # noqa: BLE001 - a warning never raises into the task
        # Cannot reach the application (a process the task forked, say):
        # shown here, as without offload.
        _original_showwarning[0](message, category, filename, lineno, file, line)


def _module_of(filename: str) -> str:
    """The module name ``warnings`` itself would give (file name, no ``.py``)."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return name[:-3] if name.endswith(".py") else name or "<unknown>"


class ForwardingHandler(logging.Handler):
    """On a worker's root logger: sends the running task's records to the
    application; records made outside any task go where they would have
    gone without it (``logging.lastResort``, if no other handler)."""

    def emit(self, record: logging.LogRecord) -> None:
        current = _current()
        if current is None or current[1][1] is None:
            if len(logging.getLogger().handlers) == 1:
                last_resort = logging.lastResort
                if last_resort is not None and record.levelno >= last_resort.level:
                    last_resort.handle(record)
            return
        runner = current[0]
        try:
            payload = portable_record(record, self)
            payload["offload_task"] = task_label(runner)
            runner.send(runner.task_id, (FORWARDED, ("log", payload)))
        except Exception:  # noqa: BLE001 - logging never raises into the task
            self.handleError(record)


def portable_record(record: logging.LogRecord, handler: logging.Handler) -> dict:
    """The attributes of ``record`` as plain values: its message formatted,
    its exception and stack as text (``makeLogRecord`` rebuilds it)."""
    message = record.getMessage()
    exc_text = record.exc_text
    if record.exc_info and not exc_text:
        exc_text = (handler.formatter or _FORMATTER).formatException(record.exc_info)
    payload: dict[str, Any] = {}
    for name, value in record.__dict__.items():
        if name in _DROPPED:
            continue
        if value is None or isinstance(value, (str, int, float)):
            payload[name] = value
        else:
            payload[name] = repr(value)
    payload["msg"] = message
    payload["args"] = None
    payload["exc_info"] = None
    payload["exc_text"] = exc_text
    return payload


_FORMATTER = logging.Formatter()
