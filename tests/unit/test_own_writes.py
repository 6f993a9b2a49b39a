"""OwnWrites: what a worker wrote is known by (id, rev), bounded, oldest forgotten first."""

from __future__ import annotations

import threading

from workers.follower import OwnWrites


def test_a_written_revision_is_known_and_another_revision_or_id_is_not() -> None:
    own = OwnWrites()
    own.add("task-1", "1-abc")
    assert ("task-1", "1-abc") in own
    assert ("task-1", "2-abc") not in own
    assert ("task-2", "1-abc") not in own
    assert ("task-1\x001-abc", "") not in own  # the separator is not a way to forge a pair
    assert "task-1" not in own


def test_results_of_a_bulk_write_are_known_except_the_refused_ones() -> None:
    own = OwnWrites()
    own.add_results([{"id": "a", "rev": "1-x", "ok": True}, {"id": "b", "error": "conflict"},
                     {"id": "c", "rev": "1-y", "error": "forbidden"}])
    assert ("a", "1-x") in own
    assert ("c", "1-y") not in own
    assert len(own) == 1


def test_the_oldest_pairs_are_forgotten_beyond_the_bound_and_a_repeat_is_not_counted_twice() -> None:
    own = OwnWrites(capacity=3)
    for n in range(5):
        own.add(f"doc-{n}", "1-r")
    own.add("doc-4", "1-r")
    assert len(own) == 3
    assert [(f"doc-{n}", "1-r") in own for n in range(5)] == [False, False, True, True, True]


def test_threads_adding_at_once_lose_nothing() -> None:
    own = OwnWrites()

    def add(base: int) -> None:
        for n in range(2_000):
            own.add(f"doc-{base}-{n}", "1-r")

    threads = [threading.Thread(target=add, args=(b,)) for b in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(own) == 8_000
    assert all((f"doc-{b}-{n}", "1-r") in own for b in range(4) for n in range(0, 2_000, 97))


def test_a_write_in_flight_is_claimed_by_its_content_only() -> None:
    """Before a write's answer is in, a revision read from the server is the writer's own only when it holds
    exactly the content sent (the server's bookkeeping aside); once settled, nothing is claimed any more."""
    own = OwnWrites()
    sent = {"_id": "t1", "type": "Task", "status": "Ready", "for": "s1", "executionPeriod": {"start": "2026-11-30"}}
    own.expect([sent])
    sent["_rev"] = "1-set-by-the-writer-meanwhile"  # the writer's own dict changes: what was sent is kept
    assert own.expecting("t1") and not own.expecting("t2")
    assert not own.claim({**sent, "_rev": "2-b", "status": "Completed"})  # a device's edit: not ours
    assert ("t1", "2-b") not in own
    assert not own.claim({**sent, "_rev": "1-c", "_deleted": True})
    assert not own.claim({k: v for k, v in sent.items() if k != "_rev"})  # no revision to remember
    assert own.claim({**sent, "_rev": "1-a", "_revisions": {"start": 1, "ids": ["a"]}})
    assert ("t1", "1-a") in own
    own.settle(["t1"])
    assert not own.expecting("t1") and not own.claim({**sent, "_rev": "1-d"})


def test_waiting_for_writes_in_flight_ends_when_their_answers_are_in_or_at_the_bound() -> None:
    """A reader waits for the answers of writes in flight (they settle in another thread) and goes on as soon
    as the ones it asked about are in; ids nobody writes are not waited for; a write that never answers ends
    the wait at its bound."""
    own = OwnWrites()
    own.expect([{"_id": "a"}, {"_id": "b"}, {"_id": "c"}])
    assert own.wait_settled(["x"], 0.0)  # not in flight: nothing to wait for
    assert not own.wait_settled(["a"], 0.05)  # no answer: the bound
    timer = threading.Timer(0.1, own.settle, args=(["a", "b"],))
    timer.start()
    try:
        assert own.wait_settled(["a", "b"], 10.0)
    finally:
        timer.join()
    assert not own.expecting("a") and own.expecting("c")
