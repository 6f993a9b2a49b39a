"""Python's cycle collector paused while one jurisdiction is evaluated.

An evaluation allocates tens of thousands of small containers that live until its end (FHIR resources, tasks,
condition targets). Each allocation past the collector's threshold makes it traverse the young objects, and
those all survive: the traversals were 15-25% of an activation's evaluation (``bench/evaluator_activation.py``,
session 13), for no garbage found. Reference counting frees what an evaluation drops either way; the cycles it
may make are collected as usual once the pause ends, so memory stays bounded by one jurisdiction's evaluation.

The collector is one switch for the whole process: the pause is counted, so that threads evaluating at once
share it, the last one out switches the collector back on, and a collector switched off by someone else before
stays off.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0
_resume = False  # whether the first holder found the collector on (then the last one switches it back on)


@contextmanager
def cycle_collection_paused() -> Iterator[None]:
    global _holders, _resume
    with _lock:
        if _holders == 0:
            _resume = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _resume:
                gc.enable()
