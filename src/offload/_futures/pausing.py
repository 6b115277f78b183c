"""Pause, resume and send: what iteration and progress futures share.

What runs where::

    main thread                              worker (thread, process, Dask)
    -----------                              ------------------------------
    future.pause()                           at each pause point (an
      gate = flag.pause_gate()  (once)         iteration's yield, a
      gate.pause()  ─ knocks on the flag ──▶   progress(...) call):
    future.send(value)                         flag.attention()?  (one call,
      gate.send(value) ─────────────────────▶    as cheap as is_set())
    future.resume()                              cancelled? ─▶ stop
      gate.resume() ────────────────────────▶    else gate.checkpoint():
    future.cancel()                                blocks while paused,
      flag.set(), gate.cancel() ────────────▶      wakes on resume or cancel

The gate is made from the task's cancel flag, lazily, by the first
``pause()`` or ``send()``: a task that never pauses costs nothing more than
before (its pause point asks ``attention()`` where it used to ask
``is_set()``).  Each context's flag knows how to make its gate
(``pause_gate()`` on the main side, ``worker_gate()`` on the worker side)
and how to tell a task, at no cost, that something waits for it
(``knock()``, ``attention()``): threads share one gate (a condition
variable); a worker process connects to its task's gate in the main
process; a Dask worker receives the controls in its memory.  A flag
without these methods (a third-party context's) cannot pause: ``pause()``
and ``send()`` raise an error that says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from traits.api import Any as AnyTrait
from traits.api import Bool, Int, Property

from offload._futures.base import BaseFuture, TaskCancelled

logger = logging.getLogger("offload.futures")

#: Message kind: how many sent values the generator received (sent at the
#: end of an iteration that received any, before its final message).
VALUES_RECEIVED = "values_received"

#: What :meth:`PausePoint.take` returns when no value was sent.
NO_VALUE: Any = object()


class PausableFuture(BaseFuture):
    """A future whose task can be paused and resumed from the main thread.

    ``pause()``, ``resume()`` and ``paused`` are called and change on the
    main thread.  The task stops at its next pause point (an iteration's
    ``yield``, a ``progress(...)`` call) and blocks there, without polling,
    until ``resume()`` or ``cancel()``.
    """

    #: True from ``pause()`` until ``resume()``, ``cancel()`` or the end of
    #: the task.  Read-only, observable; changes on the main thread.  It says
    #: that a pause was asked for: the task stops at its next pause point.
    paused = Property(Bool())

    # Private traits ---------------------------------------------------------

    #: What ``paused`` reads; changed through ``_set_paused``, which
    #: notifies.  (Not ``Property(observe=...)``: that has Traits build
    #: observers for each future as it is made, about 50 us a submit.)
    _paused = AnyTrait(False)

    #: The main side of the task's pause gate, once made.
    _gate = AnyTrait(None)

    def pause(self) -> bool:
        """Ask the task to stop at its next pause point; main thread.

        Returns
        -------
        bool
            True if the future was WAITING or EXECUTING and not paused
            already; False (and nothing happens) otherwise.

        Raises
        ------
        RuntimeError
            If the executor's context cannot pause tasks (a third-party
            context whose cancel flags have no ``pause_gate()``).
        """
        if self._paused or not self.cancellable:
            return False
        self._main_gate().pause()
        self._set_paused(True)
        return True

    def resume(self) -> bool:
        """Let a paused task go on; main thread.

        Returns
        -------
        bool
            True if the future was paused; False (and nothing happens)
            otherwise.
        """
        if not self._paused:
            return False
        self._set_paused(False)
        self._gate.resume()
        return True

    def cancel(self, *args: Any, **kwargs: Any) -> bool:
        """Ask the task to stop (see :meth:`BaseFuture.cancel`); main thread.

        A paused task wakes, and ends at its pause point: an iteration's
        generator is closed there, a ``progress(...)`` call raises
        :class:`~offload.api.TaskCancelled`.  ``paused`` becomes False.
        """
        # Setting the task's cancel flag wakes it (the flags of offload's
        # contexts wake their gates), whoever sets it: this method, the
        # executor, a timeout.
        cancelled = super().cancel(*args, **kwargs)
        if cancelled:
            self._set_paused(False)
        return cancelled

    # Private methods --------------------------------------------------------

    def _get_paused(self) -> bool:
        return self._paused

    def _set_paused(self, paused: bool) -> None:
        if paused != self._paused:
            self._paused = paused
            self.trait_property_changed("paused", not paused, paused)  # type: ignore[attr-defined]

    def _main_gate(self) -> Any:
        """The task's pause gate, made at the first call (main thread)."""
        gate = self._gate
        if gate is not None:
            return gate
        flag = getattr(self._cancel, "flag", None)
        make_gate = getattr(flag, "pause_gate", None)
        if make_gate is None:
            raise RuntimeError(
                f"this {type(self).__name__}'s task cannot be paused or sent "
                f"values: its context's cancel flag ({type(flag).__name__}) "
                "has no pause_gate(); use MultithreadingContext, "
                "MultiprocessingContext or DaskContext"
            )
        gate = make_gate()
        self._gate = gate
        self.add_done_callback(self._task_over)
        return gate

    def _task_over(self) -> None:
        """Done: nothing is paused any more; release the gate (main thread)."""
        self._set_paused(False)
        self._gate.close()


class IterationControl(PausableFuture):
    """:class:`PausableFuture` with ``send(value)`` for generators."""

    # Private traits ---------------------------------------------------------

    #: Values queued by ``send()``.
    _values_sent = Int(0)

    #: Values the generator received, as its task reported at its end.
    _values_received = Int(0)

    def send(self, value: Any) -> bool:
        """Queue ``value`` for the generator; main thread.

        The generator receives the queued values in order, first in first
        out, each as the value of one ``yield`` (``generator.send``): the
        first value goes to the yield after the one in progress (a
        generator that has not started yet receives it at its first yield,
        its start taking none).  ``None`` is a value like any other.
        Values are never dropped nor reordered while the generator runs;
        those still queued when it ends (returns, raises or is cancelled)
        are discarded, and if it ended on its own a warning on the
        ``offload.futures`` logger says how many.  An iterable that is not
        a generator (no ``send`` method) fails the task with a
        ``TypeError`` at its next item after a value was sent.

        Returns
        -------
        bool
            True if the value was queued; False if the future is not
            WAITING or EXECUTING (it is done or cancelling: nothing would
            receive the value), in which case nothing happens.

        Raises
        ------
        RuntimeError
            If the executor's context cannot send values to its tasks.
        Exception
            Whatever pickling raises, for a value that cannot be sent to a
            worker process or a Dask worker.
        """
        if not self.cancellable:
            return False
        self._main_gate().send(value)
        if self._values_sent == 0:
            self.add_done_callback(self._check_values_received)
        self._values_sent += 1
        return True

    def _process_values_received(self, count: int) -> None:
        self._values_received = count

    def _check_values_received(self) -> None:
        unused = self._values_sent - self._values_received
        if unused > 0 and self.state != "cancelled":
            logger.warning(
                "%d of the %d values sent to %r were never received: the "
                "generator ended first; they were discarded",
                unused, self._values_sent, self,
            )


def attention_of(cancelled: Callable[[], bool]) -> Callable[[], bool]:
    """What a task's pause points call instead of ``cancelled()``.

    ``cancelled`` is the bound ``is_set`` of the task's cancel flag; its
    ``attention()`` is true once the task is cancelled, paused or sent a
    value, and costs what ``is_set()`` does.  With a flag that cannot
    pause (a third-party context's), ``cancelled`` itself.  Worker side.
    """
    return getattr(getattr(cancelled, "__self__", None), "attention", cancelled)


class PausePoint:
    """The worker side of pausing: where a task stops while paused.

    Made in the worker, from the task's ``cancelled`` callable, when
    :func:`attention_of` first says so: a task never paused, sent a value
    or cancelled never makes one.

    Parameters
    ----------
    cancelled : callable
        The task's ``cancelled()``, the bound ``is_set`` of its flag.
    """

    __slots__ = ("cancelled", "_flag", "_gate", "received")

    def __init__(self, cancelled: Callable[[], bool]) -> None:
        self.cancelled = cancelled
        self._flag: Any = getattr(cancelled, "__self__", None)
        self._gate: Any = None
        #: How many sent values :meth:`take` handed out.
        self.received = 0

    def stop(self) -> bool:
        """Block while paused; True if the task must end (cancelled).

        Called in the worker when :attr:`attention` is true.
        """
        cancelled = self.cancelled
        if cancelled():
            return True
        gate = self._gate
        if gate is None:
            gate = self._gate = self._flag.worker_gate()
        gate.checkpoint(cancelled)
        return cancelled()

    def take(self) -> Any:
        """The next value sent to the task, or :data:`NO_VALUE`."""
        gate = self._gate
        if gate is None:
            return NO_VALUE
        value = gate.take(NO_VALUE)
        if value is not NO_VALUE:
            self.received += 1
        return value

    def close(self) -> None:
        """The task is over (worker): let go of the gate."""
        gate = self._gate
        if gate is not None:
            self._gate = None
            gate.close()

    def raise_if_cancelled(self) -> None:
        """Block while paused; raise :class:`TaskCancelled` once cancelled."""
        if self.stop():
            raise TaskCancelled("the task was cancelled")
