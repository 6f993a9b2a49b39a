"""CouchPool: results in order, every call ended before an error is raised, one client per thread."""

from __future__ import annotations

import threading
import time
from typing import Any, cast

import pytest

from workers.couch import Couch
from workers.parallel import CouchPool


class Client:
    """Stands for a Couch client: the pool only clones it."""

    def __init__(self, clones: list[Client]) -> None:
        self.clones = clones

    def clone(self) -> Client:
        twin = Client(self.clones)
        self.clones.append(twin)
        return twin


def pool(threads: int = 3) -> tuple[CouchPool, Client]:
    client = Client([])
    return CouchPool(cast(Couch, client), threads=threads, name="test-pool"), client


def test_results_come_back_in_the_order_of_the_items_whatever_order_the_calls_end_in() -> None:
    p, _ = pool()

    def slow_first(client: Any, n: int) -> int:
        time.sleep(0.05 * (5 - n))
        return n * 10

    assert p.map(slow_first, range(5)) == [0, 10, 20, 30, 40]


def test_calls_run_at_once_each_thread_on_its_own_clone() -> None:
    p, root = pool(threads=3)
    barrier = threading.Barrier(3, timeout=5)  # breaks (and fails the test) unless three calls run together
    seen: list[tuple[str, int]] = []

    def meet(client: Any, n: int) -> int:
        barrier.wait()
        seen.append((threading.current_thread().name, id(client)))
        return n

    assert p.map(meet, [1, 2, 3]) == [1, 2, 3]
    assert all(client is not root for client in root.clones)
    assert len({name for name, _ in seen}) == 3
    assert len({client for _, client in seen}) == 3
    assert len(root.clones) == 3


def test_a_single_item_runs_in_the_callers_thread_on_the_callers_client() -> None:
    p, root = pool()
    out = p.map(lambda client, n: (threading.current_thread(), client, n), [7])
    assert out == [(threading.current_thread(), root, 7)]
    assert root.clones == []


def test_an_error_is_raised_after_every_other_call_has_ended() -> None:
    p, _ = pool()
    ended: list[int] = []

    def some_fail(client: Any, n: int) -> int:
        if n == 0:
            raise ValueError("item 0 refused")
        time.sleep(0.1)
        ended.append(n)
        return n

    with pytest.raises(ValueError, match="item 0 refused"):
        p.map(some_fail, [0, 1, 2, 3])
    assert sorted(ended) == [1, 2, 3]


def test_run_gives_independent_calls_results_in_order() -> None:
    p, _ = pool()
    assert p.run(lambda c: "a", lambda c: "b") == ["a", "b"]
    p.close()
    assert p.run(lambda c: 1, lambda c: 2) == [1, 2]  # a closed pool starts again when used
