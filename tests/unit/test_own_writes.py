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


def test_a_write_in_flight_is_waited_for_then_known_as_our_own() -> None:
    """An activation's writer thread sends a write; the follower's page lists the documents before the answer
    is read: it waits for the answer, then knows the revisions as its own."""
    own = OwnWrites()
    own.begin(["t-1", "t-2"])
    assert not own.wait_for(["t-2", "other"], timeout=0.05)  # still in flight
    assert own.wait_for(["other"], timeout=0)  # not ours: nothing to wait for
    answer = threading.Timer(0.2, lambda: own.end(["t-1", "t-2"], [{"id": "t-1", "rev": "1-a"},
                                                                   {"id": "t-2", "error": "conflict"}]))
    answer.start()
    assert own.wait_for(["t-1"], timeout=5)
    answer.join()
    assert ("t-1", "1-a") in own and len(own) == 1


def test_the_same_ids_in_two_writes_stay_in_flight_until_both_end() -> None:
    own = OwnWrites()
    own.begin(["t-1"])
    own.begin(["t-1"])
    own.end(["t-1"])  # a write that failed: no answer rows
    assert not own.wait_for(["t-1"], timeout=0)
    own.end(["t-1"], [{"id": "t-1", "rev": "1-a"}])
    assert own.wait_for(["t-1"], timeout=0) and ("t-1", "1-a") in own
