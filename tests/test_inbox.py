"""The inbox's wake protocol, with a pingee that records instead of waking.

Deterministic: the test plays the event loop, calling ``on_ping`` itself
for each recorded ping, so every interleaving it checks is one it chose.
"""

from __future__ import annotations

import threading

import pytest

from offload._event_loops.interface import IEventLoop, IPingee
from offload._routing.inbox import Inbox
from offload._routing.protocol import RETURNED


class RecordingPingee(IPingee):
    def __init__(self, on_ping):
        self.on_ping = on_ping
        self.pings = 0

    def connect(self):
        pass

    def disconnect(self):
        pass

    def ping(self):
        self.pings += 1


class RecordingLoop(IEventLoop):
    def pingee(self, on_ping):
        self.made = RecordingPingee(on_ping)
        return self.made

    def event_loop_helper(self):
        raise NotImplementedError


class ListInbox(Inbox):
    sender = None


@pytest.fixture
def inbox():
    loop = RecordingLoop()
    box = ListInbox(loop, time_slice=float("inf"))
    box.finished = []
    box.connect(box.finished.append)
    box.pingee = loop.made
    return box


def run_pings(box):
    """Be the event loop: one ``on_ping`` per ping recorded so far."""
    while box.pingee.pings:
        box.pingee.pings -= 1
        box.pingee.on_ping()


def test_one_ping_per_batch_and_every_item_delivered(inbox):
    seen = []
    inbox.add_receiver(1, lambda message: seen.append(message) or False)
    for i in range(100):
        inbox.put((1, ("progress", i)))
    assert inbox.pingee.pings == 1
    run_pings(inbox)
    assert seen == [("progress", i) for i in range(100)]
    inbox.put((1, ("progress", 100)))
    assert inbox.pingee.pings == 1  # armed again once drained


def test_items_put_during_a_delivery_do_not_ping(inbox):
    # What let Qt run slice after slice with no turn for its timers: a
    # producer that appends while the main thread delivers found the inbox
    # armed and posted a wake, so the next slice was already queued ahead
    # of every timer.  The delivery sees such items itself.
    seen = []
    pings_during = []

    def receiver(message):
        seen.append(message)
        if message[1] < 50:
            producer = threading.Thread(
                target=inbox.put, args=((1, ("progress", message[1] + 50)),)
            )
            producer.start()
            producer.join(timeout=10)
            pings_during.append(inbox.pingee.pings)
        return False

    inbox.add_receiver(1, receiver)
    for i in range(50):
        inbox.put((1, ("progress", i)))
    inbox.pingee.pings -= 1
    inbox.pingee.on_ping()
    assert pings_during == [0] * 50
    assert [m[1] for m in seen] == list(range(100))
    assert inbox.pingee.pings == 0
    inbox.put((1, ("progress", 100)))
    assert inbox.pingee.pings == 1


def test_a_slice_that_runs_out_of_time_pings_for_the_rest(inbox):
    inbox._time_slice = 0.0
    seen = []
    inbox.add_receiver(1, lambda message: seen.append(message) or False)
    for i in range(1000):
        inbox.put((1, ("progress", i)))
    inbox.pingee.pings -= 1
    inbox.pingee.on_ping()
    assert 0 < len(seen) < 1000
    assert inbox.pingee.pings == 1  # it asked to come back
    inbox.put((1, ("progress", 1000)))
    assert inbox.pingee.pings == 1  # and producers did not ping again
    run_pings(inbox)
    assert [m[1] for m in seen] == list(range(1001))


def test_a_delivery_that_raises_still_comes_back_for_the_rest(inbox):
    seen = []

    def receiver(message):
        if message[1] == 3:
            raise KeyboardInterrupt
        seen.append(message)
        return False

    inbox.add_receiver(1, receiver)
    for i in range(10):
        inbox.put((1, ("progress", i)))
    inbox.pingee.pings -= 1
    with pytest.raises(KeyboardInterrupt):
        inbox.pingee.on_ping()
    assert inbox.pingee.pings == 1
    run_pings(inbox)
    assert [m[1] for m in seen] == [0, 1, 2, 4, 5, 6, 7, 8, 9]


def test_the_receivers_table_is_dropped_when_the_last_task_ends(inbox):
    for task_id in range(5000):
        inbox.add_receiver(task_id, lambda message: True)
    grown = inbox._receivers
    for task_id in range(5000):
        inbox.put((task_id, (RETURNED, None)))
    run_pings(inbox)
    assert inbox.finished == list(range(5000))
    assert inbox.outstanding == 0
    assert inbox._receivers is not grown


def _wait_until(condition, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.001)


def test_a_producer_past_the_backlog_limit_waits_until_delivery_catches_up(inbox):
    seen = []
    inbox.add_receiver(1, lambda message: seen.append(message) or False)
    for i in range(300):
        inbox.put((1, ("progress", i)))
    producer = threading.Thread(target=inbox.wait_for_backlog, args=(100, 60.0))
    producer.start()
    try:
        _wait_until(lambda: inbox._producer_waiting)
        assert producer.is_alive()
        run_pings(inbox)  # the main thread delivers: the producer goes on
        producer.join(timeout=10)
        assert not producer.is_alive()
    finally:
        inbox._backlog_low.set()
        producer.join(timeout=10)
    assert len(seen) == 300


class CountingEvent:
    def __init__(self):
        self.waits = 0

    def clear(self):
        pass

    def set(self):
        pass

    def wait(self, timeout):
        self.waits += 1
        return False  # timed out


def test_after_a_timed_out_wait_the_producer_waits_again_only_after_a_delivery(inbox):
    # A main thread busy elsewhere (submitting 20,000 calls, say) must cost
    # the producer one wait, not one per chunk.
    inbox.add_receiver(1, lambda message: False)
    inbox._backlog_low = event = CountingEvent()
    for i in range(300):
        inbox.put((1, ("progress", i)))
    for _ in range(5):
        inbox.wait_for_backlog(100, 0.0)
    assert event.waits == 1
    inbox._time_slice = 0.0
    inbox.pingee.pings = 0
    inbox.pingee.on_ping()  # one slice: still more than 100 left
    assert len(inbox._items) > 100
    for _ in range(5):
        inbox.wait_for_backlog(100, 0.0)
    assert event.waits == 2
