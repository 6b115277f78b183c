"""What the executor needs from a context's message router."""

from __future__ import annotations

import abc
from collections.abc import Callable

#: ``receiver(message) -> final``: the future's ``receive``; returns True on the
#: task's last message.
Receiver = Callable[[tuple], bool]


class IMessageRouter(abc.ABC):
    """Carries each task's messages to its future's ``receive`` on the main thread.

    One router serves one executor.  The executor calls every method on the
    main thread except :meth:`inject`, which any thread may call.  A router is
    made by ``IParallelContext.message_router(event_loop)``.
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
    def connect(self, on_finished: Callable[[int], None]) -> None:
        """Start delivering.  ``on_finished(task_id)`` runs after a final message."""

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

    @abc.abstractmethod
    def deliver_blocking(self, timeout: float) -> None:
        """Deliver pending messages without the event loop, waiting for more.

        Returns after delivering at least one batch, or after ``timeout``
        seconds.  Used by ``TraitsExecutor.shutdown``.
        """
