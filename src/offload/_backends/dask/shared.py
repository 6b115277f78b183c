"""Large task arguments on Dask: sent to the cluster once, shared by the tasks.

What runs where::

    submitting thread (main)              Dask cluster               worker
    ------------------------              ------------               ------
    pool.submit(runner)
      Scatterer.share(runner)
        large argument? token (content)
        new token: pickle once, ─ scatter ─▶ key in one worker's
          client.scatter({key: data})        memory
        argument ─▶ SharedArgument(i)
      client.submit(run_task, runner, ─────▶ task depends on key ─▶ run_task(runner,
                    *scattered futures)                                *values)
                                                                      restore(): own
                                                                      copy per task
    task ended (callback thread)
      Scatterer.release(tokens): last user ─▶ future.release(): Dask forgets it

A NumPy array, ``bytes`` or ``bytearray`` of ``threshold`` bytes or more,
given as an argument (positional or keyword) to a function task, or in a
list, tuple or dict given as one (``NESTED_DEPTH`` levels down, in
containers of at most ``NESTED_LENGTH`` values), is recognised by its
content: an argument equal to one that a pending task of
this context already sent is not sent again, and one that changed since
(the same array, written to) is.  The scattered copy is released when the
last pending task that uses it ends, and at the context's close, so a long
session does not pile up data on the cluster.

What is scattered is the argument pickled, taken at submit (a snapshot, as
before); each task unpickles its own copy, so tasks that write to their
argument do not see each other's writes, as when it travelled with each
task.  The pickle stays here while tasks use it: Dask cannot recompute
scattered data, so when the worker holding it dies the pool sends the
tasks that waited for it again (``DaskWorkerPool._resend``), and
:meth:`Scatterer.renew` scatters it again.

For the embedded cluster's helper process, ``client`` is its
:class:`~offload._backends.dask.helper.HelperClient`, whose ``scatter``
sends the pickle to the helper once; the helper scatters it.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import pickle
import sys
import threading
from typing import Any

from offload._backends.remote import describe_unpicklable, dumps

logger = logging.getLogger("offload.contexts.dask")

#: Default size, in bytes, from which an argument is scattered.
SCATTER_THRESHOLD = 1 << 20

#: How deep into lists, tuples and dicts of the arguments large values are
#: looked for, and the longest container looked into (each task's arguments
#: are looked at as it is submitted: a long list of numbers is not searched).
NESTED_DEPTH = 2
NESTED_LENGTH = 64

#: Seconds a scatter again may wait for a worker: the one that held the
#: data may be restarting, and the tasks waiting for it need one.
RENEW_TIMEOUT = 120.0


class SharedArgument:
    """Stands, in a task's arguments, for the ``index``-th shared value."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple:
        return (SharedArgument, (self.index,))

    def __repr__(self) -> str:
        return f"SharedArgument({self.index})"


class _Entry:
    """One scattered argument: its Dask future, how many tasks use it, and
    its pickle, kept to scatter it again if the cluster loses it."""

    __slots__ = ("future", "users", "data")

    def __init__(self, future: Any, data: bytes) -> None:
        self.future = future
        self.users = 1
        self.data = data


def payload_size(value: Any) -> int:
    """Bytes of ``value`` if it is a kind that may be scattered, else 0.

    Called for every argument of every task: type checks only.  NumPy is
    looked up among the imported modules, never imported: an application
    that has no array imported none.
    """
    kind = type(value)
    if kind is bytes or kind is bytearray:
        return len(value)
    numpy = sys.modules.get("numpy")
    if numpy is not None and kind is numpy.ndarray and not value.dtype.hasobject:
        return int(value.nbytes)
    return 0


def _contents(value: Any) -> Any:
    """The values of ``value`` if it is a container searched for large
    arguments (a list, tuple or dict of at most ``NESTED_LENGTH``), else None."""
    kind = type(value)
    if kind is list or kind is tuple:
        return value if len(value) <= NESTED_LENGTH else None
    if kind is dict:
        return value.values() if len(value) <= NESTED_LENGTH else None
    return None


def _holds_large(value: Any, threshold: int, depth: int = NESTED_DEPTH) -> bool:
    """Whether ``value`` is, or holds (see ``_contents``), a value of
    ``threshold`` bytes or more to scatter."""
    if payload_size(value) >= threshold:
        return True
    if depth <= 0:
        return False
    contents = _contents(value)
    return contents is not None and any(
        _holds_large(item, threshold, depth - 1) for item in contents
    )


class Scatterer:
    """The large arguments that a context's pending tasks share.

    Parameters
    ----------
    client : distributed.Client or HelperClient
        Where arguments are scattered.
    prefix : str
        Dask keys of scattered arguments start with ``f"{prefix}-shared-"``.
    threshold : int or None
        Arguments of this many bytes or more are scattered; None: none are.
    timeout : float
        Seconds a scatter may take (``client.scatter(timeout=...)``).

    ``share`` runs on the submitting thread, ``release`` wherever a task's
    end is seen (Dask's callback thread, the helper's reader), ``close`` on
    the main thread; a lock orders them.
    """

    def __init__(self, client: Any, prefix: str, threshold: int | None,
                 timeout: float) -> None:
        from dask.base import tokenize

        self._tokenize = tokenize
        self._client = client
        self._prefix = f"{prefix}-shared-"
        self._threshold = threshold
        self._timeout = timeout
        self._numbers = itertools.count()
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        #: How many arguments were scattered: what tests and benchmarks
        #: count (each is one crossing of the argument to the cluster).
        self.scattered = 0

    def share(self, runner: Any) -> tuple[list[str], list[Any]] | None:
        """Scatter the large arguments of ``runner``'s task, if any.

        Replaces each in the task by a :class:`SharedArgument` and returns
        the tokens (for :meth:`release`) and the Dask futures to pass to
        ``client.submit`` after the runner, in that order; None if the task
        has no large argument (or no arguments offload knows how to look
        at: a task that is not a function task).
        """
        threshold = self._threshold
        if threshold is None:
            return None
        task = runner.task
        args = getattr(task, "args", None)
        kwargs = getattr(task, "kwargs", None)
        if type(args) is not tuple or type(kwargs) is not dict:
            return None
        # The common case, no large argument, in one pass.
        if not any(_holds_large(value, threshold) for value in args) and not any(
            _holds_large(value, threshold) for value in kwargs.values()
        ):
            return None
        tokens: list[str] = []
        futures: list[Any] = []
        try:
            new_args = tuple(self._replace(value, tokens, futures) for value in args)
            new_kwargs = {
                name: self._replace(value, tokens, futures) for name, value in kwargs.items()
            }
        except BaseException:
            self.release(tokens)
            raise
        task.args = new_args
        task.kwargs = new_kwargs
        return tokens, futures

    def release(self, tokens: list[str]) -> None:
        """A task that used these arguments ended, or never will start."""
        released = []
        with self._lock:
            entries = self._entries
            for token in tokens:
                entry = entries.get(token)
                if entry is None:
                    continue  # released at close already
                entry.users -= 1
                if not entry.users:
                    del entries[token]
                    released.append(entry.future)
        for future in released:
            _release(future)

    def renew(self, tokens: list[str], futures: list[Any]) -> list[Any]:
        """Scatter again the arguments of a task that Dask dropped because
        the cluster lost them (the callback thread); their new futures.

        ``futures`` are those the task was sent with: an argument whose
        future changed since was scattered again for another task already.
        """
        renewed = []
        lost = []
        with self._lock:
            for token, old in zip(tokens, futures, strict=True):
                entry = self._entries.get(token)
                if entry is None:
                    raise RuntimeError("the context was closed")
                if entry.future is old:
                    lost.append(old)
                    entry.future = self._scatter(
                        entry.data, max(self._timeout, RENEW_TIMEOUT)
                    )
                renewed.append(entry.future)
        for future in lost:
            _release(future)
        return renewed

    def close(self) -> None:
        """Release every scattered argument (main thread, at the context's close)."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            _release(entry.future)

    def pending(self) -> int:
        """How many scattered arguments pending tasks still use."""
        return len(self._entries)

    # Private ------------------------------------------------------------------

    def _replace(self, value: Any, tokens: list[str], futures: list[Any],
                 depth: int = NESTED_DEPTH) -> Any:
        """``value`` with each large value in it (itself included) replaced by
        its placeholder; the containers that held one are copies."""
        threshold = self._threshold
        assert threshold is not None  # share() returned early otherwise
        if payload_size(value) >= threshold:
            return self._acquire(value, tokens, futures)
        if depth <= 0 or _contents(value) is None:
            return value
        if type(value) is dict:
            return {key: self._replace(item, tokens, futures, depth - 1)
                    for key, item in value.items()}
        items = [self._replace(item, tokens, futures, depth - 1) for item in value]
        return items if type(value) is list else tuple(items)

    def _acquire(self, value: Any, tokens: list[str], futures: list[Any]
                 ) -> SharedArgument:
        """The placeholder of ``value``, scattered if no pending task has it."""
        token = self._token(value)
        if token in tokens:
            # The same content twice in one task: sent, and counted, once.
            return SharedArgument(tokens.index(token))
        with self._lock:
            entry = self._entries.get(token)
            if entry is not None:
                entry.users += 1
            else:
                data = self._pickle(value)
                entry = _Entry(self._scatter(data), data)
                self._entries[token] = entry
        tokens.append(token)
        futures.append(entry.future)
        return SharedArgument(len(tokens) - 1)

    def _token(self, value: Any) -> str:
        """What recognises ``value`` by content: Dask's ``tokenize``."""
        if type(value) is bytes or type(value) is bytearray:
            # tokenize hashes bytes through their repr (seconds for 100 MB);
            # for arrays it hashes the buffer, as here.
            return self._tokenize(type(value).__name__, hashlib.sha1(value).hexdigest())
        return self._tokenize(value)

    @staticmethod
    def _pickle(value: Any) -> bytes:
        try:
            return dumps(value)
        except Exception as exc:  # noqa: BLE001 - whatever pickling raises
            raise TypeError(describe_unpicklable(value, exc)) from exc

    def _scatter(self, data: bytes, timeout: float | None = None) -> Any:
        """Send ``data`` to the cluster; its Dask future (under the lock).

        Each scatter gets a new key: the release of an earlier scatter of
        the same content may still be on its way to the scheduler, and must
        not remove the new one.
        """
        key = f"{self._prefix}{next(self._numbers)}"
        if timeout is None:
            timeout = self._timeout
        future = self._client.scatter({key: data}, timeout=timeout)[key]
        self.scattered += 1
        return future


def _release(future: Any) -> None:
    """Let Dask forget scattered data; never raises: it runs as tasks end
    (Dask's callback thread), where an error would leave a future pending,
    and at close, with a client that may be closed already."""
    try:
        future.release()
    except Exception:  # noqa: BLE001 - the cluster forgets it with the client
        logger.debug("offload: could not release scattered data", exc_info=True)


def restore(task: Any, values: tuple) -> None:
    """Put the shared ``values`` back into ``task``'s arguments (worker).

    Each value is an argument pickled: each place it goes gets its own
    copy, unpickled here (an object passed twice is two copies).  The
    placeholders are looked for where :meth:`Scatterer.share` put them.
    """
    def load(value: Any, depth: int = NESTED_DEPTH) -> Any:
        if type(value) is SharedArgument:
            return pickle.loads(values[value.index])
        if depth <= 0 or _contents(value) is None:
            return value
        if type(value) is dict:
            return {key: load(item, depth - 1) for key, item in value.items()}
        items = [load(item, depth - 1) for item in value]
        return items if type(value) is list else tuple(items)

    task.args = tuple(load(value) for value in task.args)
    task.kwargs = {name: load(value) for name, value in task.kwargs.items()}
