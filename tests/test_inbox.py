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


# A delivery inside a delivery (observers running nested event loops) ---------


def test_a_task_is_forgotten_before_its_final_message_is_delivered(inbox):
    seen = []

    def receiver(message):
        seen.append((message[0], inbox.outstanding, list(inbox.finished)))
        return True

    inbox.add_receiver(7, receiver)
    inbox.put((7, (RETURNED, None)))
    run_pings(inbox)
    assert seen == [(RETURNED, 0, [7])]


def test_what_on_finished_returns_runs_after_the_delivery_even_if_it_raised(inbox):
    order = []
    inbox.connect(lambda task_id: (lambda: order.append(f"after {task_id}")))

    def receiver(message):
        order.append("delivered")
        raise KeyboardInterrupt

    inbox.add_receiver(3, receiver)
    inbox.put((3, (RETURNED, None)))
    inbox.pingee.pings -= 1
    with pytest.raises(KeyboardInterrupt):
        inbox.pingee.on_ping()
    assert order == ["delivered", "after 3"]


def test_a_nested_delivery_holds_back_the_messages_of_the_task_being_delivered(inbox):
    # Task 1's observer of its first message runs a nested loop (here: the
    # test calls on_ping from inside it), during which task 2's messages
    # come, and task 1's next ones wait until the observer has returned.
    seen = []

    def receiver_1(message):
        seen.append(("1 starts", message[1]))
        if message[1] == 0:
            # The nested loop: nudged once as it goes idle (the toolkit's
            # waker does that), then woken by the producer.
            inbox.pingee.on_ping()
            inbox.put((2, ("progress", "b")))
            run_pings(inbox)
        seen.append(("1 ends", message[1]))
        return False

    inbox.add_receiver(1, receiver_1)
    inbox.add_receiver(2, lambda message: seen.append(("2", message[1])) or False)
    inbox.put((1, ("progress", 0)))
    inbox.put((1, ("progress", 1)))
    inbox.put((2, ("progress", "a")))
    inbox.put((1, ("progress", 2)))
    inbox.pingee.pings -= 1
    inbox.pingee.on_ping()  # the outer delivery
    run_pings(inbox)
    assert seen == [
        ("1 starts", 0),
        ("2", "a"),
        ("2", "b"),
        ("1 ends", 0),
        ("1 starts", 1),
        ("1 ends", 1),
        ("1 starts", 2),
        ("1 ends", 2),
    ]


def test_a_nested_delivery_arms_the_inbox_so_producers_wake_the_nested_loop(inbox):
    pings_inside = []

    def receiver_1(message):
        inbox.pingee.on_ping()  # a nested loop nudged once
        inbox.put((2, ("progress", 0)))
        pings_inside.append(inbox.pingee.pings)
        return False

    inbox.add_receiver(1, receiver_1)
    inbox.add_receiver(2, lambda message: False)
    inbox.put((1, ("progress", 0)))
    inbox.pingee.pings -= 1
    inbox.pingee.on_ping()
    assert pings_inside == [1]


def test_a_blocking_delivery_inside_one_delivers_every_task(inbox):
    # shutdown() from an observer of task 1 must see task 1 end too.
    seen = []

    def receiver_1(message):
        seen.append(message[1])
        if message[1] == "first":
            inbox.deliver_blocking(0.0)
        return message[0] == RETURNED

    inbox.add_receiver(1, receiver_1)
    inbox.put((1, ("progress", "first")))
    inbox.put((1, (RETURNED, "end")))
    inbox.pingee.pings -= 1
    inbox.pingee.on_ping()
    assert seen == ["first", "end"]
    assert inbox.finished == [1]


def test_nesting_is_bounded_and_what_it_refused_comes_later(inbox):
    from offload._routing.inbox import _MAX_DEPTH

    depths = []

    def receiver(message):
        depths.append(inbox._depth)
        # Each message's observer runs a nested loop, which delivers the
        # next task's message: as deep as it goes.
        if message[1] < 3 * _MAX_DEPTH:
            inbox.put((message[1] + 1, ("progress", message[1] + 1)))
            inbox.pingee.on_ping()
        return False

    for task_id in range(3 * _MAX_DEPTH + 1):
        inbox.add_receiver(task_id, receiver)
    inbox.put((0, ("progress", 0)))
    inbox.pingee.pings = 0
    inbox.pingee.on_ping()
    assert max(depths) == _MAX_DEPTH
    assert inbox.pingee.pings >= 1  # owed
    run_pings(inbox)
    assert len(depths) == 3 * _MAX_DEPTH + 1


def test_release_when_idle_waits_for_the_last_task(inbox):
    released = []
    inbox.add_receiver(1, lambda message: True)
    inbox.release_when_idle(lambda: released.append(True))
    assert released == []
    run_pings(inbox)
    assert released == []  # task 1 still runs
    inbox.put((1, (RETURNED, None)))
    run_pings(inbox)
    assert released == [True]


def test_release_when_idle_from_another_thread_wakes_the_main_thread(inbox):
    released = []
    thread = threading.Thread(
        target=inbox.release_when_idle, args=(lambda: released.append(True),)
    )
    thread.start()
    thread.join(timeout=10)
    assert released == []  # not on the main thread
    assert inbox.pingee.pings == 1
    run_pings(inbox)
    assert released == [True]


def test_release_when_idle_on_an_idle_main_thread_is_immediate(inbox):
    released = []
    inbox.release_when_idle(lambda: released.append(True))
    assert released == [True]


def test_a_blocking_delivery_is_never_refused_for_depth(inbox):
    # shutdown() from an observer as deep as deliveries go must still see
    # every task end, or it would wait for ever.
    from offload._routing.inbox import _MAX_DEPTH

    delivered = []
    ended_inside = []
    last = _MAX_DEPTH  # the task whose end shutdown() waits for

    def nest(message):
        level = message[1]
        if inbox._depth < _MAX_DEPTH:
            # A nested loop that delivers the next task's message.
            inbox.put((level + 1, ("progress", level + 1)))
            inbox.pingee.on_ping()
        else:
            inbox.put((last, (RETURNED, "end")))
            inbox.deliver_blocking(0.0)
            ended_inside.append(list(delivered))
        return False

    for task_id in range(_MAX_DEPTH):
        inbox.add_receiver(task_id, nest)
    inbox.add_receiver(last, lambda message: delivered.append(message) or True)
    inbox.put((0, ("progress", 0)))
    inbox.pingee.pings = 0
    inbox.pingee.on_ping()
    assert ended_inside == [[(RETURNED, "end")]]
    assert inbox.finished == [last]
