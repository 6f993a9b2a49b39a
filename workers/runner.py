"""The worker runner: finds the databases to follow, drives one follower per (worker, database), waits with
backoff while the server is unreachable, and stops cleanly on a signal (the current batch finishes first).

Databases are discovered with ``_db_updates`` where the server has it (CouchDB) and by polling ``_all_dbs``
otherwise (PouchDB Server), so meta and area databases created while the runner runs are followed too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from workers.couch import Couch
from workers.errors import ServerUnreachable
from workers.follower import Follower, Handler, legacy_checkpoint_name
from workers.logs import log_event
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

# Extra work a worker does between feed batches (e.g. a plan activation in progress). Returns True when it
# did something, False when it has nothing left to do.
Chore = Callable[[], bool]


class Runner:
    def __init__(
        self,
        couch: Couch,
        settings: Settings,
        handlers: list[Handler],
        *,
        chores: list[Chore] | None = None,
        discover_every: float = 5.0,
        idle_sleep: tuple[float, float] = (0.1, 1.0),
    ) -> None:
        self.couch = couch
        self.settings = settings
        self.handlers = handlers
        self.chores = chores or []
        self.discover_every = discover_every
        self.idle_sleep = idle_sleep
        self.followers: dict[tuple[str, str], Follower] = {}
        self.stats = RunStats()
        self._last_discovery = 0.0

    def discover(self) -> None:
        dbs = self.settings.dbs
        for db in self.couch.all_dbs():
            kind = dbs.kind(db)
            if kind is None:
                continue
            for handler in self.handlers:
                key = (handler.name, db)
                if key not in self.followers and handler.follows(kind):
                    self.followers[key] = Follower(
                        self.couch, db, handler, dbs.audit,
                        batch_size=self.settings.batch_size * int(getattr(handler, "batch_factor", 1)),
                        attempts=self.settings.change_attempts, shard=self.settings.shard,
                        legacy_name=legacy_checkpoint_name(handler.name, self.settings.shard)
                        if kind in TRUSTED_KINDS else None,
                    )
                    log_event(log, "following", worker=handler.name, db=db)
        self._last_discovery = time.monotonic()

    def run_once(self) -> bool:
        """One round: a batch of every follower and every chore. True when anything was left to do."""
        if time.monotonic() - self._last_discovery >= self.discover_every:
            self.discover()
        busy = False
        for key, follower in list(self.followers.items()):
            step = follower.step()
            if step.changes:
                self.stats.batches += 1
                self.stats.changes += step.changes
                self.stats.writes += step.writes
                self.stats.parked += step.parked
                self.stats.per_db[key[1]] = self.stats.per_db.get(key[1], 0) + step.changes
            busy = busy or not step.caught_up or step.changes > 0
        for chore in self.chores:
            busy = chore() or busy
        return busy

    def run(self, stop: threading.Event | None = None, *, until_idle: bool = False) -> RunStats:
        stop = stop or threading.Event()
        sleep = self.idle_sleep[0]
        outage_attempt = 0
        self._last_discovery = 0.0
        while not stop.is_set():
            try:
                busy = self.run_once()
                if outage_attempt:
                    log_event(log, "server reachable again", after_attempts=outage_attempt)
                    outage_attempt = 0
            except ServerUnreachable as exc:
                outage_attempt += 1
                wait = min(30.0, 0.5 * 2 ** min(outage_attempt, 6))
                log_event(log, "server unreachable, waiting", logging.WARNING, attempt=outage_attempt,
                          wait_s=wait, error=str(exc))
                for follower in self.followers.values():
                    follower.reset()  # re-read checkpoints after the outage
                stop.wait(wait)
                continue
            if busy:
                sleep = self.idle_sleep[0]
                continue
            if until_idle:
                # one more discovery pass: a database created during the last round is not idle yet
                before = len(self.followers)
                self.discover()
                if len(self.followers) == before:
                    break
                continue
            stop.wait(sleep)
            sleep = min(self.idle_sleep[1], sleep * 2)
        log_event(log, "stopped", batches=self.stats.batches, changes=self.stats.changes, writes=self.stats.writes,
                  parked=self.stats.parked)
        return self.stats
