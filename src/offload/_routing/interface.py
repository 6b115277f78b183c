"""What the executor needs from a context's message router."""

from __future__ import annotations

import abc
from collections.abc import Callable

#: ``receiver(message) -> final``: the future's ``receive``; returns True on the
#: task's last message.
Receiver = Callable[[tuple], bool]

#: ``on_finished(task_id) -> after``: see :meth:`IMessageRouter.connect`.
OnFinished = Callable[[int], Callable[[], None] | None]


class IMessageRouter(abc.ABC):
    """Carries each task's messages to its future's ``receive`` on the main thread.

    One router serves one executor.  The executor calls every method on the
    main thread except :meth:`inject`, :meth:`add_receiver` and
    :meth:`discard_receiver`, which any thread may call (a submission from
    another thread registers its task there, while the main thread
    delivers).  A router is made by
    ``IParallelContext.message_router(event_loop)``.
    """

    @property
    @abc.abstractmethod
    def sender(self) -> Callable[[int, tuple], None]:
        """``sender(task_id, message)``, called by task runners in workers.

        It must travel to wherever the context runs tasks (pickle for
        processes) and may buffer, provided each task's messages keep their
        order and its final message flushes what came before.
        """

    @abc.abstractmethod
    def connect(self, on_finished: OnFinished) -> None:
        """Start delivering.

        ``on_finished(task_id)`` runs when a task's final message (its kind in
        ``protocol.FINAL_KINDS``) is about to be delivered, the task already
        forgotten by the router, so that the future's observers find it gone
        (one may shut the executor down, or raise ``SystemExit``).  If it
        returns a callable, the router calls that once the message has been
        delivered, even if an observer raised.
        """

    @abc.abstractmethod
    def disconnect(self) -> None:
        """Stop delivering and release what :meth:`connect` set up."""

    @abc.abstractmethod
    def add_receiver(self, task_id: int, receiver: Receiver) -> None:
        """Deliver messages for ``task_id`` to ``receiver`` from now on."""

    @abc.abstractmethod
    def discard_receiver(self, task_id: int) -> None:
        """Forget ``task_id`` (a submission that failed before it was sent)."""

    @abc.abstractmethod
    def inject(self, task_id: int, message: tuple) -> None:
        """Queue ``message`` for ``task_id`` as if the task had sent it.

        Any thread.  Used to report failures outside the task (a worker that
        died, a task that could not be pickled); ignored if the task has
        already delivered its final message.
        """

    @property
    @abc.abstractmethod
    def outstanding(self) -> int:
        """How many tasks have not yet delivered their final message."""

    def release_when_idle(self, release: Callable[[], None]) -> None:
        """Call ``release()`` on the main thread once no task is outstanding.

        Any thread.  Used when an executor is dropped without ``shutdown``:
        its futures still get their tasks' messages, then the router lets
        ``release`` disconnect it.  This default never calls it (the router
        stays connected until the event loop goes).
        """
        return None

    @abc.abstractmethod
    def deliver_blocking(self, timeout: float) -> None:
        """Deliver pending messages without the event loop, waiting for more.

        Returns after delivering at least one batch, or after ``timeout``
        seconds.  Used by ``TraitsExecutor.shutdown``, which may call it
        from inside a delivery (an observer that shuts the executor down):
        it then delivers every task's messages, observers' exceptions
        propagating as from any delivery.
        """
