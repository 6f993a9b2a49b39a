"""The cycle collector's pause around a jurisdiction's evaluation: off inside, back on after, shared by threads,
and left off when someone else had switched it off."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from workers.evaluator.gcpause import cycle_collection_paused


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_the_collector_is_off_inside_and_on_again_after() -> None:
    with cycle_collection_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_error_inside_still_switches_it_back_on() -> None:
    with pytest.raises(ValueError), cycle_collection_paused():
        raise ValueError("boom")
    assert gc.isenabled()


def test_a_collector_switched_off_before_stays_off() -> None:
    gc.disable()
    with cycle_collection_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_overlapping_pauses_of_two_threads_end_with_the_last_one() -> None:
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def second() -> None:
        first_in.wait(5)
        with cycle_collection_paused():
            second_in.set()
            first_out.wait(5)
            seen.append(gc.isenabled())  # the first thread has left: still paused for this one

    thread = threading.Thread(target=second)
    thread.start()
    with cycle_collection_paused():
        first_in.set()
        second_in.wait(5)
    first_out.set()
    thread.join(5)
    assert seen == [False]
    assert gc.isenabled()


def test_cycles_made_during_the_pause_are_collected_after_it() -> None:
    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    with cycle_collection_paused():
        a, b = Node(), Node()
        a.other, b.other = b, a
        kept = [id(a)]
        del a, b
    gc.collect()
    assert not any(id(o) in kept for o in gc.get_objects() if isinstance(o, Node))
