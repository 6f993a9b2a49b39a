"""Which CouchDB node to ask, and how long to wait before asking again: the transport's policy, pure (no network).

A client knows one or several nodes of one cluster (``FIELDSYNC_COUCH_URL=http://u:p@n1:5984,http://n2:5984``).
It asks its *home* node (a sharded worker's is node ``i mod n``, so that workers spread over the nodes); a node
that fails a request (refused, reset, timed out, 5xx, 429) is marked down and the next node in ring order that is
not down is asked instead (*failover*). A node marked down is tried again ``failback_after`` seconds after its
failure: the home node then becomes current again (*fail-back*) and, if it still fails, is marked down anew.

:class:`RetryPolicy` spaces the attempts of one request: no wait while a node not yet asked in the current round
remains (failover is immediate), exponential backoff once every node has failed in a round.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

# how long a read may lag the changes feed on a cluster: the feed lists a write one copy of its shard holds
# while the two copies that answer the quorum read have yet to take it (ReadModel._read, resolver.read_leaves)
STALE_READ_WAIT_S = 3.0


def stale_read_pauses(limit: float = STALE_READ_WAIT_S) -> Iterator[float]:
    """The pauses before each new read of what lags the feed: from 50 ms, doubling up to 500 ms, ``limit``
    seconds in all (ReadModel._read, resolver.read_leaves)."""
    waited, pause = 0.0, 0.05
    while waited < limit:
        yield pause
        waited += pause
        pause = min(pause * 2, 0.5)


@dataclass(frozen=True)
class Switch:
    """A change of the node in use: ``failover`` (away from a failed node) or ``failback`` (home again)."""

    kind: str
    from_node: str
    to_node: str


class NodeList:
    """The nodes of one cluster, the one in use, and which are down since when. Thread-safe: clones of a client
    (one per thread) share one list, so a failure seen by one thread moves them all."""

    def __init__(self, urls: Sequence[str], *, home: int = 0, failback_after: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not urls:
            raise ValueError("a node list needs at least one node")
        if failback_after < 0:
            raise ValueError("failback_after must be >= 0")
        self.urls = tuple(u.rstrip("/") for u in urls)
        self.home = home % len(self.urls)
        self.failback_after = failback_after
        self._clock = clock
        self._current = self.home
        self._down: dict[int, float] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.urls)

    @property
    def home_url(self) -> str:
        return self.urls[self.home]

    def down(self) -> list[int]:
        """The nodes marked down (tried again after ``failback_after``)."""
        with self._lock:
            return sorted(self._down)

    def current(self) -> int:
        """The node to ask now: the node in use, or the home node once its down mark is old enough to try again."""
        with self._lock:
            if self._current != self.home:
                since = self._down.get(self.home)
                if since is None or self._clock() - since >= self.failback_after:
                    self._current = self.home
            return self._current

    def failed(self, index: int) -> tuple[int, Switch | None]:
        """Node ``index`` failed a request: mark it down and move to the next node in ring order that is not down
        (or, when all are, to the one that failed longest ago). The node to ask next within the same request (no
        fail-back there), and the switch made, if any."""
        with self._lock:
            self._down[index] = self._clock()
            if index != self._current:
                return self._current, None  # another thread moved on already
            count = len(self.urls)
            ring = [(index + step) % count for step in range(1, count)]
            up = [i for i in ring if i not in self._down]
            if up:
                target = up[0]
            elif ring:
                target = min(ring, key=lambda i: self._down[i])
            else:
                return index, None  # a single node: nowhere else to go
            self._current = target
            return target, Switch("failover", self.urls[index], self.urls[target])

    def succeeded(self, index: int) -> Switch | None:
        """Node ``index`` answered: it is up. A fail-back when it is the home node coming back."""
        with self._lock:
            was_down = self._down.pop(index, None) is not None
            if was_down and index == self.home and len(self.urls) > 1:
                return Switch("failback", self.urls[index], self.urls[index])
            return None


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts one request gets and the wait after each failed one: ``retries`` counts rounds over the
    nodes, so a single node gets ``retries + 1`` attempts and three nodes three times as many."""

    retries: int = 4
    backoff: float = 0.25

    def attempts(self, nodes: int = 1, retries: int | None = None) -> int:
        """Attempts of one request: ``retries + 1`` rounds over the nodes (a cluster that just lost a node may
        answer "nodedown" from every live node for a moment: each round gives it more time)."""
        return ((self.retries if retries is None else retries) + 1) * max(1, nodes)

    def wait(self, failed_attempts: int, nodes: int) -> float:
        """Seconds to wait after ``failed_attempts`` failures in a row of one request over ``nodes`` nodes: none while
        a node not yet asked in this round remains, then ``backoff``, doubled after each full round."""
        nodes = max(1, nodes)
        if failed_attempts % nodes:
            return 0.0
        rounds = failed_attempts // nodes
        return float(self.backoff * (2 ** (rounds - 1)))


def is_unsupported(status: int | None) -> bool:
    """Whether an error status says the server lacks an endpoint (400, 404, 501), not that it failed (5xx, 429):
    only then may a client turn a feature off for good."""
    return status in (400, 404, 501)
