"""The runner's gate (pure threading, no server): one turn at a time, feed batches before chores, closing."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

from workers.parallel import Pending
from workers.runner import Gate, Runner


def test_a_waiting_feed_batch_goes_before_a_waiting_chore() -> None:
    gate = Gate()
    order: list[str] = []
    assert gate.enter(feed=True)  # a batch under way

    def take(name: str, feed: bool) -> None:
        if gate.enter(feed=feed):
            order.append(name)
            gate.leave()

    chore = threading.Thread(target=take, args=("chore", False))
    chore.start()
    feed = threading.Thread(target=take, args=("feed", True))
    feed.start()
    # both wait for the batch under way (the feed thread counted as waiting before the turn is given back)
    while True:
        with gate._cond:
            if gate._feeds_waiting == 1:
                break
    gate.leave()
    feed.join(5)
    chore.join(5)
    assert order == ["feed", "chore"]


def test_closing_waits_for_the_turn_under_way_and_refuses_new_ones() -> None:
    gate = Gate()
    assert gate.enter(feed=False)
    closed = threading.Event()

    def close() -> None:
        gate.close()
        closed.set()

    closer = threading.Thread(target=close)
    closer.start()
    assert not closed.wait(0.2)  # the chore slice under way is not cut short
    gate.leave()
    assert closed.wait(5)
    assert not gate.enter(feed=True) and not gate.enter(feed=False)


def _chore_waiting(gate: Gate) -> tuple[threading.Thread, threading.Event]:
    """A chore slice that waits for its turn (started); the event is set once it had it."""
    entered = threading.Event()

    def chore() -> None:
        if gate.enter(feed=False):
            entered.set()
            gate.leave()

    thread = threading.Thread(target=chore)
    thread.start()
    return thread, entered


def test_an_announced_feed_batch_keeps_chores_out_while_its_page_is_read() -> None:
    gate = Gate()
    gate.announce()  # a follower reads its next page outside the turn
    thread, entered = _chore_waiting(gate)
    assert not entered.wait(0.3), "a chore slice started while a feed batch was announced"
    assert gate.enter(feed=True, announced=True)  # the page is read: the batch takes its turn
    assert not entered.is_set()
    gate.leave()
    thread.join(5)
    assert entered.is_set()


def test_a_withdrawn_announcement_lets_the_chores_in() -> None:
    gate = Gate()
    gate.announce()
    thread, entered = _chore_waiting(gate)
    assert not entered.wait(0.2)
    gate.withdraw()  # the read failed: the follower deals with it outside the turn
    thread.join(5)
    assert entered.is_set()


def test_a_chore_waiting_for_its_requests_waits_outside_the_turn() -> None:
    """A chore that answers Pending (an activation whose writes fill its pipeline) gives the turn back: a feed
    batch enters while the requests are under way; the chore is not called again in a spin, and is called again
    as soon as one of its requests ends."""
    runner = Runner(None, None, [], idle_sleep=(5.0, 5.0))  # type: ignore[arg-type]  # no server asked here
    gate = Gate()
    stop = threading.Event()
    write: Future[None] = Future()
    calls: list[float] = []

    def chore() -> bool | Pending:
        calls.append(time.monotonic())
        return Pending((write,)) if not write.done() else False

    loop = threading.Thread(target=runner._chore_loop, args=([chore], gate, stop))
    loop.start()
    try:
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert calls
        fed = threading.Event()

        def feed() -> None:
            if gate.enter(feed=True):
                fed.set()
                gate.leave()

        threading.Thread(target=feed).start()
        assert fed.wait(0.5), "the chore kept the turn while its requests were under way"
        time.sleep(0.3)
        assert len(calls) <= 2  # waited on the requests (up to PENDING_WAIT_S), not called again and again
        before = len(calls)
        ended = time.monotonic()
        write.set_result(None)
        deadline = time.monotonic() + 5
        while len(calls) == before and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(calls) > before and calls[before] - ended < 0.5
    finally:
        stop.set()
        loop.join(10)
