"""Requests to several databases at once: a fan-out that writes ten areas, or a resolver that needs three
independent reads, waits for the slowest request instead of the sum of them.

:class:`CouchPool` runs a function over items on a few threads, each thread with its own clone of the client
(its own connection pool: ``requests`` sessions are not shared between threads). Results come back in the
order of the items; the first error is raised once every call has ended, so no request is left running
behind the caller's back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from workers.couch import Couch

T = TypeVar("T")
R = TypeVar("R")

THREADS = 4  # the server does the work: a few requests in flight cover its cores without queueing behind them


class CouchPool:
    def __init__(self, couch: Couch, threads: int = THREADS, name: str = "couch") -> None:
        self.couch = couch
        self.threads = threads
        self.name = name
        self._executor: ThreadPoolExecutor | None = None
        self._clients = threading.local()
        self._lock = threading.Lock()

    def _client(self) -> Couch:
        client: Couch | None = getattr(self._clients, "couch", None)
        if client is None:
            client = self._clients.couch = self.couch.clone()
        return client

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix=self.name)
            return self._executor

    def map(self, fn: Callable[[Couch, T], R], items: Iterable[T]) -> list[R]:
        """``fn(client, item)`` for every item, at most ``threads`` at once; one item runs in the caller's
        thread on the caller's client (no hand-over for the common case of a single request), as does every
        item of a one-thread pool (no thread is started for it)."""
        todo: Sequence[T] = list(items)
        if len(todo) <= 1 or self.threads <= 1:
            return [fn(self.couch, item) for item in todo]
        def call(item: T) -> R:
            return fn(self._client(), item)

        futures = [self._pool().submit(call, item) for item in todo]
        errors = [f.exception() for f in futures]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
        return [f.result() for f in futures]

    def submit(self, call: Callable[[Couch], R]) -> Future[R]:
        """``call(client)`` on a thread of the pool; its result (or error) from the future."""
        return self._pool().submit(lambda: call(self._client()))

    def run(self, *calls: Callable[[Couch], R]) -> list[R]:
        """Independent calls at once, each ``call(client)``; their results in order."""
        return self.map(lambda client, call: call(client), calls)

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None


@dataclass(frozen=True)
class Pending:
    """What a chore answers when it can go no further until requests it handed to threads end (an activation
    whose writes in flight fill its pipeline): the runner waits for the first of them *outside* the worker's
    turn, so the worker's feed batches run meanwhile, instead of the chore holding the turn while it waits."""

    futures: tuple[Future[Any], ...]

    def wait(self, timeout: float) -> bool:
        """Until one of the requests has ended or ``timeout`` seconds; True when one has."""
        if not self.futures:
            return True
        done, _ = wait(self.futures, timeout=timeout, return_when=FIRST_COMPLETED)
        return bool(done)
