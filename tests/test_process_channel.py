"""The worker side of process routing, tested in this process."""

from __future__ import annotations

import multiprocessing
import pickle
import threading
import time

from offload._backends.process import channel as process_channel
from offload._backends.process.channel import DONE, Channel
from offload._routing.protocol import RAISED, RETURNED, raised_message


def read_all(connection) -> list[tuple[str, object]]:
    """Everything sent, in order: ("message", record) and ("control", record)."""
    items: list[tuple[str, object]] = []
    while connection.poll(0.2):
        messages, controls = pickle.loads(connection.recv_bytes())
        items += [("message", m) for m in (pickle.loads(messages) if messages else [])]
        items += [("control", c) for c in controls]
    return items


class _SleepWatcher:
    """Stands for the time module: tells when the flush thread sleeps."""

    def __init__(self) -> None:
        self.sleeping = threading.Event()

    def sleep(self, seconds: float) -> None:
        self.sleeping.set()
        time.sleep(seconds)


def test_close_during_the_flush_delay_ends_the_flush_thread(monkeypatch):
    # Caught a worker that took a second to exit: close() set the wake-up
    # event while the flush thread slept, and the thread's clear() undid it.
    watcher = _SleepWatcher()
    monkeypatch.setattr(process_channel, "time", watcher)
    read, write = multiprocessing.Pipe(duplex=False)
    channel = Channel(write, delay=0.2)
    channel.send(0, 1, ("progress", 1))
    assert watcher.sleeping.wait(10)
    channel.close()
    assert not channel._thread.is_alive()
    assert read_all(read) == [("message", (0, 1, ("progress", 1)))]


def test_a_control_record_comes_after_the_messages_before_it():
    read, write = multiprocessing.Pipe(duplex=False)
    channel = Channel(write, delay=0.01)
    channel.send(0, 1, ("progress", 1))
    channel.send(0, 1, (RETURNED, 2))
    channel.control((DONE, 7, True, None))
    channel.close()
    assert read_all(read) == [
        ("message", (0, 1, ("progress", 1))),
        ("message", (0, 1, (RETURNED, 2))),
        ("control", (DONE, 7, True, None)),
    ]


def test_an_unpicklable_message_fails_only_its_task():
    read, write = multiprocessing.Pipe(duplex=False)
    channel = Channel(write, delay=0.01)
    with channel._lock:  # hold the flush thread off: one chunk
        channel._buffer += [
            (0, 1, ("progress", threading.Lock())),
            (0, 1, ("progress", "dropped: the task already failed")),
            (0, 2, ("progress", "kept")),
        ]
    channel.close()
    messages = [record for kind, record in read_all(read) if kind == "message"]
    assert [(task, message[0]) for _, task, message in messages] == [(1, RAISED), (2, "progress")]
    info, _ = messages[0][2][1]
    assert "could not pickle a 'progress' message" in info[1]


class NeedsTwo(Exception):
    def __init__(self, a, b):
        super().__init__(a)


def test_an_exception_that_will_not_unpickle_travels_as_its_description():
    read, write = multiprocessing.Pipe(duplex=False)
    channel = Channel(write, delay=0.01)
    channel.send(0, 1, raised_message(NeedsTwo(1, 2)))
    channel.close()
    [(kind, (_, _, message))] = read_all(read)
    assert message[0] == RAISED
    info, exception = message[1]
    assert exception is None
    assert info[0] == "test_process_channel.NeedsTwo"


def test_the_kinds_of_control_records_are_distinct():
    # Two kinds with one value (added on two branches at once) made a
    # worker that kept an argument look as if it retired.
    from offload._backends.process import channel

    kinds = {name: getattr(channel, name) for name in ("DONE", "QUEUE_PUT", "READY", "KEPT", "RETIRE")}
    assert len(set(kinds.values())) == len(kinds), kinds
