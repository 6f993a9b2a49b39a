"""The worker runner: finds the databases to follow, drives one follower per (worker, database), waits with
backoff while the server is unreachable, and stops cleanly on a signal (the batches under way finish first).

Two ways to run:

- ``run(stop)`` (``fieldsync work``, ``fieldsync up``): workers wake on changes. Each follower has a thread
  that waits on its database's feed (a longpoll ``_changes`` from its checkpoint, answered at once when a change
  is there, whose page is the first batch) and then runs batches until it has caught up. A batch of nothing but
  the worker's own writes moves its checkpoint in memory (:attr:`Follower.defer_s`), written with the next
  batch that acts, when the feed is idle or at stop. The workers run side by side; a worker whose state is
  not shared between threads runs one batch at a time (its :class:`Gate`), with its feed batches before its
  chores (an activation runs in slices between them, and waits for its writes in flight outside the turn: it
  never holds an event back); a worker declared
  ``parallel`` runs the batches of different databases at once (one slow area never delays the others).
  Databases are found at start, then from ``_db_updates`` where the server has it (CouchDB once its
  ``_global_changes`` database exists: ``fieldsync init`` makes it), by polling ``_all_dbs`` every
  ``discover_every`` seconds otherwise (PouchDB Server), so meta and area databases created while the runner
  runs are followed too.
- ``run(until_idle=True)`` (tests, benchmarks, the demo, ``fieldsync work --until-idle``): rounds of one batch
  of every follower and every chore, in turn, until nothing is left to do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from workers.couch import Couch
from workers.errors import FieldsyncError, NotFound, ServerUnreachable
from workers.follower import Follower, Handler, Step, legacy_checkpoint_name
from workers.logs import log_event
from workers.parallel import Pending
from workers.settings import Settings

log = logging.getLogger("fieldsync.runner")


@dataclass
class RunStats:
    batches: int = 0
    changes: int = 0
    writes: int = 0
    parked: int = 0
    per_db: dict[str, int] = field(default_factory=dict)


# databases no device user can write: an old checkpoint kept in them (before checkpoints moved to the audit
# database) is still trusted once
TRUSTED_KINDS = ("main", "audit", "users-meta")

T = TypeVar("T")

# Extra work a worker does between feed batches (e.g. a plan activation in progress). Returns True when it
# did something, False when it has nothing left to do, or Pending: it can go on once one of the requests it
# handed to threads has ended (the runner waits for that outside the worker's turn).
Chore = Callable[[], bool | Pending]
# seconds the chore thread waits for a Pending chore's requests before it looks again (and at a stop)
PENDING_WAIT_S = 1.0

# seconds a follower's longpoll waits for a change before asking again (an idle database costs one request
# per this many seconds)
WAIT_S = 20.0
# awake, seconds a checkpoint may trail in memory past changes that needed nothing (a worker's own writes)
CHECKPOINT_DEFER_S = 5.0
# awake, seconds a checkpoint may trail in memory past changes that were acted on (their effects written; a kill
# replays them idempotently): at most one checkpoint write per feed per this many seconds
CHECKPOINT_ACT_DEFER_S = 2.0


class Gate:
    """One worker's turn: one batch (or chore slice) at a time; feed batches waiting go before chores."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._feeds_waiting = 0
        self._closed = False

    def announce(self) -> None:
        """A feed batch is coming (its page being read): no chore slice starts meanwhile. Followed by
        ``enter(feed=True, announced=True)`` or :meth:`withdraw`."""
        with self._cond:
            self._feeds_waiting += 1

    def withdraw(self) -> None:
        with self._cond:
            self._feeds_waiting -= 1
            self._cond.notify_all()

    def enter(self, feed: bool, announced: bool = False) -> bool:
        """Wait for the turn; False once the gate is closed (the runner is stopping)."""
        with self._cond:
            self._feeds_waiting += feed and not announced
            while not self._closed and (self._busy or (not feed and self._feeds_waiting)):
                self._cond.wait()
            self._feeds_waiting -= feed
            if self._closed:
                self._cond.notify_all()
                return False
            self._busy = True
            return True

    def leave(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def close(self) -> None:
        """No turn starts any more; returns when the one under way has ended."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            while self._busy:
                self._cond.wait()


class _Outage:
    """Whether the server is reachable, shared by the threads: one log line when it goes, one when it is back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.down = False

    def failed(self, exc: ServerUnreachable, attempt: int) -> float:
        wait = min(30.0, 0.5 * 2.0 ** min(attempt, 6))
        with self._lock:
            first, self.down = not self.down, True
        if first:
            log_event(log, "server unreachable, waiting", logging.WARNING, attempt=attempt, wait_s=wait,
                      error=str(exc))
        return wait

    def ok(self) -> None:
        if self.down:
            with self._lock:
                back, self.down = self.down, False
            if back:
                log_event(log, "server reachable again")


class Runner:
    def __init__(
        self,
        couch: Couch,
        settings: Settings,
        handlers: list[Handler],
        *,
        chores: Mapping[str, Sequence[Chore]] | None = None,
        discover_every: float = 5.0,
        idle_sleep: tuple[float, float] = (0.1, 1.0),
        wait_s: float = WAIT_S,
    ) -> None:
        self.couch = couch
        self.settings = settings
        self.handlers = handlers
        self.chores: Mapping[str, Sequence[Chore]] = chores or {}
        self.discover_every = discover_every
        self.idle_sleep = idle_sleep
        self.wait_s = wait_s
        self.followers: dict[tuple[str, str], Follower] = {}
        self.stats = RunStats()
        self._last_discovery = 0.0
        self._lock = threading.Lock()  # stats and followers, when threads run
        self._outage = _Outage()
        self._failure: BaseException | None = None
        self._prefetch_pool: ThreadPoolExecutor | None = None

    def discover(self) -> list[Follower]:
        """Followers for the databases not followed yet; returns the new ones."""
        dbs = self.settings.dbs
        new: list[Follower] = []
        for db in self.couch.all_dbs():
            kind = dbs.kind(db)
            if kind is None:
                continue
            for handler in self.handlers:
                key = (handler.name, db)
                if key not in self.followers and handler.follows(kind):
                    follower = Follower(
                        self.couch, db, handler, dbs.audit,
                        batch_size=self.settings.batch_size * handler.batch_factor,
                        attempts=self.settings.change_attempts, shard=self.settings.shard,
                        legacy_name=legacy_checkpoint_name(handler.name, self.settings.shard)
                        if kind in TRUSTED_KINDS else None,
                    )
                    with self._lock:
                        self.followers[key] = follower
                    new.append(follower)
                    log_event(log, "following", worker=handler.name, db=db)
        self._last_discovery = time.monotonic()
        return new

    def _count(self, db: str, step: Step) -> None:
        if not step.changes:
            return
        with self._lock:
            self.stats.batches += 1
            self.stats.changes += step.changes
            self.stats.writes += step.writes
            self.stats.parked += step.parked
            self.stats.per_db[db] = self.stats.per_db.get(db, 0) + step.changes

    def _all_chores(self) -> list[Chore]:
        return [chore for chores in self.chores.values() for chore in chores]

    # ------------------------------------------------------------------------------ rounds (until idle)

    def run_once(self) -> bool:
        """One round: a batch of every follower and every chore. True when anything was left to do."""
        if time.monotonic() - self._last_discovery >= self.discover_every:
            self.discover()
        busy = False
        behind: list[Follower] = []
        for key, follower in list(self.followers.items()):
            step = follower.step()
            self._count(key[1], step)
            busy = busy or not step.caught_up or step.changes > 0
            if not step.caught_up:
                behind.append(follower)
        chores = self._all_chores()
        if not chores:
            return busy
        # the next pages of the followers that are behind are read while the chores run (an activation slice):
        # joined before the next round, so a follower is never touched by two threads at once
        reads = [self._prefetcher().submit(f.prefetch) for f in behind]
        waiting: list[Pending] = []
        try:
            for chore in chores:
                done = chore()
                if isinstance(done, Pending):
                    waiting.append(done)
                else:
                    busy = done or busy
        finally:
            for read in reads:
                read.exception()  # a failed read is left to the step, which reads again
        if waiting and not busy:
            # nothing else to do in this round: wait for a chore's requests rather than go round for nothing
            waiting[0].wait(PENDING_WAIT_S)
        return busy or bool(waiting)

    def _prefetcher(self) -> ThreadPoolExecutor:
        if self._prefetch_pool is None:
            self._prefetch_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="feed-prefetch")
        return self._prefetch_pool

    def run(self, stop: threading.Event | None = None, *, until_idle: bool = False) -> RunStats:
        stop = stop or threading.Event()
        if until_idle:
            self._run_rounds(stop)
        else:
            self._run_awake(stop)
        log_event(log, "stopped", batches=self.stats.batches, changes=self.stats.changes, writes=self.stats.writes,
                  parked=self.stats.parked)
        if self._failure is not None:
            raise self._failure
        return self.stats

    def _run_rounds(self, stop: threading.Event) -> None:
        attempt = 0
        self._last_discovery = 0.0
        while not stop.is_set():
            try:
                busy = self.run_once()
                attempt = 0
                self._outage.ok()
            except ServerUnreachable as exc:
                attempt += 1
                for follower in self.followers.values():
                    follower.reset()  # re-read checkpoints after the outage
                stop.wait(self._outage.failed(exc, attempt))
                continue
            if busy:
                continue
            # one more discovery pass: a database created during the last round is not idle yet
            if not self.discover():
                break

    # ------------------------------------------------------------------------------ awake on changes

    def _run_awake(self, stop: threading.Event) -> None:
        gates: dict[str, Gate] = {}  # a worker's gate, or a (worker, database)'s for a parallel worker
        threads: list[threading.Thread] = []

        def gate_of(handler: Handler, db: str) -> Gate:
            key = f"{handler.name}@{db}" if handler.parallel else handler.name
            return gates.setdefault(key, Gate())

        def start(target: Callable[..., None], name: str, *args: object) -> None:
            thread = threading.Thread(target=target, args=(*args, stop), name=name, daemon=True)
            threads.append(thread)
            thread.start()

        def follow(new: list[Follower]) -> None:
            for follower in new:
                follower.defer_s = CHECKPOINT_DEFER_S
                follower.act_defer_s = CHECKPOINT_ACT_DEFER_S
                start(self._follow, f"{follower.handler.name}@{follower.db}", follower,
                      gate_of(follower.handler, follower.db))

        follow(self._until_reachable(self.discover, stop) or [])
        for handler in self.handlers:
            if self.chores.get(handler.name):
                start(self._chore_loop, f"{handler.name} chores", list(self.chores[handler.name]),
                      gate_of(handler, ""))
        has_db_updates = self._until_reachable(lambda: self.couch.supports("db_updates"), stop)
        if has_db_updates:
            start(self._watch_db_updates, "db updates", follow)
        elif has_db_updates is not None:
            start(self._poll_all_dbs, "all_dbs", follow)
        stop.wait()
        for gate in gates.values():
            gate.close()  # the batches under way finish; the threads waiting on feeds end with the process
        for follower in list(self.followers.values()):
            try:
                follower.flush()  # a position held in memory (see Follower.defer_s)
            except FieldsyncError as exc:  # the next start replays those changes: skipped or idempotent
                log_event(log, "checkpoint not written at stop", logging.WARNING, worker=follower.handler.name,
                          db=follower.db, error=str(exc)[:300])

    def _until_reachable(self, action: Callable[[], T], stop: threading.Event) -> T | None:
        """``action()``, tried again after each outage (with backoff) until it answers; None if stopped first."""
        attempt = 0
        while not stop.is_set():
            try:
                found = action()
                self._outage.ok()
                return found
            except ServerUnreachable as exc:
                attempt += 1
                stop.wait(self._outage.failed(exc, attempt))
        return None

    def _fail(self, where: str, exc: BaseException, stop: threading.Event) -> None:
        """An error no retry mends (a refused checkpoint write...): the runner stops, and ``run`` raises it. After
        the stop, a thread left waiting on a feed may see its database go: that is no failure."""
        if stop.is_set():
            return
        log_event(log, "worker thread failed", logging.ERROR, thread=where,
                  error=f"{exc.__class__.__name__}: {str(exc)[:300]}")
        with self._lock:
            self._failure = self._failure or exc
        stop.set()

    def _follow(self, follower: Follower, gate: Gate, stop: threading.Event) -> None:
        """Wait for a change, then batches until caught up; again."""
        attempt = 0

        def flush_in_turn() -> None:
            """A position held in memory written, in the worker's turn (see Follower.defer_s, act_defer_s)."""
            if gate.enter(feed=True):
                try:
                    follower.flush()
                finally:
                    gate.leave()

        while not stop.is_set():
            try:
                due = follower.due_in()
                if due is not None and due <= 0:  # still busy when a held position fell due: written now
                    flush_in_turn()
                    continue
                if not follower.wait(self.wait_s if due is None else min(self.wait_s, max(0.05, due))):
                    flush_in_turn()  # idle
                else:
                    while not stop.is_set():
                        # the page is read outside the turn (it overlaps a batch or a chore slice under way),
                        # the batch announced first: no chore slice starts meanwhile, feed batches keep going first
                        gate.announce()
                        try:
                            follower.prefetch()
                        except BaseException:
                            gate.withdraw()
                            raise
                        if not gate.enter(feed=True, announced=True):
                            return
                        try:
                            step = follower.step()
                        finally:
                            gate.leave()
                        self._count(follower.db, step)
                        if step.caught_up:
                            break
                attempt = 0
                self._outage.ok()
            except ServerUnreachable as exc:
                attempt += 1
                follower.reset()  # re-read the checkpoint after the outage
                stop.wait(self._outage.failed(exc, attempt))
            except NotFound as exc:
                if stop.is_set():
                    return
                if self.couch.db_info(follower.db) is None:
                    log_event(log, "database gone: not followed any more", worker=follower.handler.name,
                              db=follower.db)
                    with self._lock:
                        self.followers.pop((follower.handler.name, follower.db), None)
                    return
                self._fail(f"{follower.handler.name}@{follower.db}", exc, stop)
            except Exception as exc:  # reported by run()
                self._fail(f"{follower.handler.name}@{follower.db}", exc, stop)

    def _chore_loop(self, chores: list[Chore], gate: Gate, stop: threading.Event) -> None:
        sleep = self.idle_sleep[0]
        attempt = 0
        while not stop.is_set():
            try:
                if not gate.enter(feed=False):
                    return
                try:
                    done = [chore() for chore in chores]
                finally:
                    gate.leave()
                attempt = 0
                waiting = [d for d in done if isinstance(d, Pending)]
                if waiting and not any(d is True for d in done):
                    # out of the turn: the worker's feed batches run while the chore's requests are under way
                    waiting[0].wait(PENDING_WAIT_S)
            except ServerUnreachable as exc:
                attempt += 1
                stop.wait(self._outage.failed(exc, attempt))
                continue
            except Exception as exc:  # reported by run()
                self._fail("chores", exc, stop)
                return
            if any(done):
                sleep = self.idle_sleep[0]
                continue
            stop.wait(sleep)
            sleep = min(self.idle_sleep[1], sleep * 2)

    def _watch_db_updates(self, follow: Callable[[list[Follower]], None], stop: threading.Event) -> None:
        """Follow the databases created from now on, as ``_db_updates`` announces them (CouchDB). Without its
        ``_global_changes`` database the server answers 404: polling ``_all_dbs`` then, with a warning."""
        since: object = "now"
        attempt = 0
        while not stop.is_set():
            try:
                page = self.couch.db_updates(since, longpoll=self.wait_s)
                since = page.last_seq
                attempt = 0
                if any(r.get("type") == "created" and self.settings.dbs.kind(str(r.get("db_name"))) is not None
                       for r in page.results):
                    follow(self.discover())
            except NotFound:
                log_event(log, "no _db_updates on this server (run `fieldsync init` as an admin to create "
                          "_global_changes): polling _all_dbs", logging.WARNING)
                self._poll_all_dbs(follow, stop)
                return
            except ServerUnreachable as exc:
                attempt += 1
                stop.wait(self._outage.failed(exc, attempt))
            except FieldsyncError as exc:
                self._fail("db updates", exc, stop)

    def _poll_all_dbs(self, follow: Callable[[list[Follower]], None], stop: threading.Event) -> None:
        while not stop.wait(max(self.discover_every, 0.5)):
            found = self._until_reachable(self.discover, stop)
            if found:
                follow(found)
