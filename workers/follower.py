"""The change-feed follower: one worker on one database, in batches, checkpointed after the batch's effects.

- reads ``_changes`` in pages of ``batch_size`` (bounded memory whatever the backlog), with the documents;
- hands each batch to the worker's handler; a batch that fails is split and each change retried up to
  ``attempts`` times, then parked in the audit database with the error, and the follower goes on;
- writes the checkpoint only after the batch's effects are written, so a kill at any moment replays at most the
  batches after the last checkpoint written (one, or a few seconds' worth awake: see below), which handlers
  treat idempotently (deterministic ids, writes only when something differs);
- keeps the checkpoint where no device user can write: ``_local/fieldsync-<worker>@<db>`` in the audit
  database, never in the followed database (any member of an area or meta database can overwrite its
  ``_local`` documents: a far ``seq`` there would hide their later writes from the workers). A checkpoint the
  server refuses (malformed, or from another server) is reset to the start with a warning, never fatal: the
  handlers are idempotent, so a replay costs time, not correctness;
- skips design documents and the revisions this process wrote itself (no loops); awake (``defer_s``), a batch
  of nothing but those moves the checkpoint in memory, written with the next batch that acts, on an idle wait
  or at stop: the echo of a worker's own writes costs no checkpoint write of its own; awake too
  (``act_defer_s``), a batch that acted moves it in memory for at most that long after the last write: one
  checkpoint write per feed per ``act_defer_s`` however many batches, and a kill replays those few seconds;
- awake, the longpoll that waits for changes reads the batch itself, which the next step processes;
- lets :class:`workers.errors.ServerUnreachable` through, so the runner waits with backoff and resumes from
  the checkpoint.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from workers.audit import now_iso, parked_record, write_once
from workers.couch import ChangesPage, Couch, Doc
from workers.errors import ServerError, ServerUnreachable
from workers.logs import log_event

log = logging.getLogger("fieldsync.follower")


class OwnWrites:
    """The (id, rev) pairs this process wrote, bounded (oldest forgotten first).

    Each pair is kept as a 128-bit digest, not as its two strings: about 90 bytes a pair instead of about 300,
    so that the bound (reached by any activation of more than 100,000 tasks) costs under 10 MiB. Two pairs share
    a digest with a probability of about 1e-29 per lookup: nothing in practice."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._seen: set[int] = set()
        self._order: deque[int] = deque()
        self._lock = threading.Lock()  # a parallel worker's batches add from several threads
        self._settled = threading.Condition(self._lock)
        self._expected: dict[str, Doc] = {}  # id -> content of a write sent whose answer is not in yet

    # ------------------------------------------------------------------ writes in flight

    def expect(self, docs: Iterable[Doc]) -> None:
        """Bodies about to be sent (before their ``_bulk_docs``): the feed can list such a write before its
        answer is in, when its revision is not known yet; :meth:`claim` then recognises it by its content."""
        contents = {str(doc["_id"]): content(doc) for doc in docs}
        with self._lock:
            self._expected.update(contents)

    def settle(self, ids: Iterable[str]) -> None:
        """The answers of those writes are in (their revisions added, or refused): no longer expected."""
        with self._lock:
            for doc_id in ids:
                self._expected.pop(doc_id, None)
            self._settled.notify_all()

    def expecting(self, doc_id: str) -> bool:
        return doc_id in self._expected

    def wait_settled(self, ids: Iterable[str], timeout: float) -> bool:
        """Until none of ``ids`` is in flight any more (their answers are in, their revisions known), or
        ``timeout`` seconds; True when none is."""
        wanted = list(ids)
        with self._settled:
            return self._settled.wait_for(lambda: not any(i in self._expected for i in wanted), timeout)

    def claim(self, doc: Doc) -> bool:
        """True when ``doc`` (a revision read from the server) holds exactly the content of a write of this
        process still in flight: its revision is then taken as this process's own. Whoever wrote it, an
        identical body is nothing new to react to; any other content (a device's edit made meanwhile) is not
        claimed and is handled as everyone else's changes are."""
        doc_id, rev = str(doc.get("_id", "")), doc.get("_rev")
        with self._lock:
            expected = self._expected.get(doc_id)
        if expected is None or not rev or doc.get("_deleted") or content(doc) != expected:
            return False
        self.add(doc_id, str(rev))
        return True

    def add(self, doc_id: str, rev: str) -> None:
        key = _digest(doc_id, rev)
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
            self._order.append(key)
            if len(self._order) > self.capacity:
                self._seen.discard(self._order.popleft())

    def add_results(self, results: Iterable[dict[str, Any]]) -> None:
        for res in results:
            if res.get("id") and res.get("rev") and not res.get("error"):
                self.add(str(res["id"]), str(res["rev"]))

    def __contains__(self, key: object) -> bool:
        if not (isinstance(key, tuple) and len(key) == 2):
            return False
        return _digest(str(key[0]), str(key[1])) in self._seen

    def __len__(self) -> int:
        return len(self._order)


def content(doc: Doc) -> Doc:
    """What a body says, without the server's bookkeeping (``_rev``, ``_revisions``, ``_conflicts``...)."""
    return {k: v for k, v in doc.items() if not k.startswith("_") or k == "_id"}


def _digest(doc_id: str, rev: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{doc_id}\x00{rev}".encode(), digest_size=16).digest(), "big")


class Handler(Protocol):
    """The worker contract: one worker's rule set, which databases it follows and what it does with a batch of
    changes. :class:`Worker` gives the defaults of the optional members."""

    name: str
    # the feed asks for each document's conflicting revisions (with the documents only)
    conflicts: bool
    # pages of ``batch_factor`` x FIELDSYNC_BATCH_SIZE changes
    batch_factor: int
    # batches of different databases may run at the same time (the handler's state is safe across threads)
    parallel: bool
    own_writes: OwnWrites

    def follows(self, kind: str) -> bool:
        """Whether the worker follows the databases of ``kind`` (``main``, ``area``, ``user-meta``...)."""
        ...

    def feed_docs(self, db: str) -> bool:
        """Whether ``db``'s feed is read with the documents (False: the handler fetches the few it needs)."""
        ...

    def process(self, db: str, changes: list[dict[str, Any]]) -> int:
        """Apply a batch; return how many documents it wrote. Raise on failure (the follower isolates it)."""
        ...

    def page_read(self, db: str, since: Any, changes: list[dict[str, Any]], last_seq: Any) -> None:
        """Every page of the feed the follower reads (from ``since`` to ``last_seq``), before any of it is
        processed, the worker's own writes included: a worker that keeps an index of the database follows the
        feed through these reads instead of reading it a second time."""
        ...


class Worker:
    """A base for workers, with the contract's defaults: feeds read with their documents, without conflicts,
    in pages of FIELDSYNC_BATCH_SIZE changes, one batch at a time; the revisions the worker writes remembered in
    ``own_writes``."""

    name = "worker"
    conflicts = False
    batch_factor = 1
    parallel = False

    def __init__(self) -> None:
        self.own_writes = OwnWrites()

    def follows(self, kind: str) -> bool:
        raise NotImplementedError

    def feed_docs(self, db: str) -> bool:
        return True

    def process(self, db: str, changes: list[dict[str, Any]]) -> int:
        raise NotImplementedError

    def page_read(self, db: str, since: Any, changes: list[dict[str, Any]], last_seq: Any) -> None:
        return None


@dataclass
class Step:
    changes: int
    writes: int
    parked: int
    caught_up: bool
    ms: float


class Follower:
    def __init__(
        self, couch: Couch, db: str, handler: Handler, audit_db: str, *, batch_size: int = 200, attempts: int = 3,
        shard: tuple[int, int] = (0, 1), legacy_name: str | None = None,
    ) -> None:
        self.couch = couch
        self.db = db
        self.handler = handler
        self.audit_db = audit_db
        self.batch_size = batch_size
        self.attempts = attempts
        # several processes share a feed by document id (FIELDSYNC_WORKER_SHARD=i/n), each with its checkpoint
        self.shard = shard
        self.checkpoint_name = checkpoint_name(handler.name, db, shard)
        # before checkpoints moved to the audit database, the main and audit databases kept their own: those
        # are read once (no device can write there); an area's or a meta database's old one is never trusted
        self.legacy_name = legacy_name
        self._checkpoint: Doc | None = None
        self._verified = False  # the checkpoint read from the server was checked against the database
        # awake mode (the runner sets it): a batch with nothing to act on (only this process's own writes, other
        # shares' documents, design documents) moves the checkpoint in memory only, written with the next batch
        # that acts or by flush(), at most defer_s after the last write. A kill replays those changes: skipped
        # again, or handled idempotently, so it costs a read, never a duplicate
        self.defer_s = 0.0
        # awake mode too: a batch that acted moves the checkpoint in memory as well, written at most act_defer_s
        # after the last write (by the next batch, or by flush() once the feed is quiet: see due_in). Its effects
        # are written already; a kill replays those few seconds of changes, which the handlers treat
        # idempotently. The checkpoint write (an fsync'd update of the audit database) then leaves the path of
        # every batch: with 50 devices writing at once it was a fifth of the workers' requests
        self.act_defer_s = 0.0
        self._unsaved = False
        self._saved_at = 0.0
        self._due: float | None = None  # when a position held after a batch that acted must be written
        self._ready: tuple[Any, ChangesPage] | None = None  # the page the last wait() read, from its position

    # ----------------------------------------------------------------------------- checkpoint

    def checkpoint(self) -> Doc:
        if self._checkpoint is None:
            found = self.couch.get_local(self.audit_db, self.checkpoint_name)
            if found is None and self.legacy_name:
                found = self.couch.get_local(self.db, self.legacy_name)
            self._checkpoint = found or dict(START)
        return self._checkpoint

    @property
    def known_checkpoint(self) -> Doc:
        """The checkpoint as last read or written, without asking the server (the start if not read yet)."""
        return self._checkpoint or dict(START)

    def reset(self) -> None:
        """Forget the checkpoint read (after an outage): the next step reads it again from the server."""
        self._checkpoint = None
        self._verified = False
        self._unsaved, self._due = False, None  # a position held in memory is replayed from the server's
        self._ready = None

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for changes after the checkpoint; True when there are some. The longpoll reads
        a whole batch as :meth:`step` would (answered at once when changes are there already) and keeps it for the
        next step, which then makes no request of its own to read it. True at once while the checkpoint has yet
        to be checked (the step does that first), and when the read fails (the step reads again and deals with
        it)."""
        if not self._verified:
            return True
        since = self.checkpoint().get("seq", 0)
        try:
            page = self.couch.changes(self.db, since, limit=self.batch_size, include_docs=self.handler.feed_docs(
                self.db), conflicts=self.handler.conflicts, style="all_docs", longpoll=seconds)
        except (ServerError, RecursionError):
            return True
        if not page.results:
            return False
        self._ready = (since, page)
        return True

    def prefetch(self) -> None:
        """Read the next page now, for the next :meth:`step` (which then makes no request of its own): the runner
        calls this outside the worker's turn, so that the feed read overlaps another batch or an activation
        slice. Nothing is read while the checkpoint has yet to be checked or a page is held already; a failed
        read is left to the step, which reads again and deals with it."""
        if not self._verified:
            return
        since = self.checkpoint().get("seq", 0)
        if self._ready is not None and self._ready[0] == since:
            return
        try:
            page = self.couch.changes(self.db, since, limit=self.batch_size, include_docs=self.handler.feed_docs(
                self.db), conflicts=self.handler.conflicts, style="all_docs")
        except (ServerError, RecursionError):
            return
        if page.results:
            self._ready = (since, page)

    def flush(self) -> None:
        """Write the checkpoint if it moved in memory only (see ``defer_s``)."""
        if self._unsaved and self._checkpoint is not None:
            self.couch.put_local(self.audit_db, self.checkpoint_name, self._checkpoint)
            self._unsaved = False
            self._saved_at = time.monotonic()
            self._due = None

    def _implausible(self, since: Any) -> str | None:
        """Why a checkpoint just read cannot be a position in this database (malformed, or ahead of it: PouchDB
        Server answers both with an empty page for ever, CouchDB with a 400), or None."""
        if since in (0, "0", None):
            return None
        if not _well_formed(since):
            return "malformed"
        # PouchDB Server's integer sequences only: CouchDB 3's opaque ones refuse a bad position themselves (400),
        # and on a cluster their leading numbers differ from one read to the next
        current = self.couch.update_seq(self.db)
        if isinstance(current, int) and _seq_number(since) > current:
            return f"ahead of the database (at {str(current)[:40]})"
        return None

    def _reset(self, since: Any, why: str, started: float) -> Step:
        log_event(log, "checkpoint reset", logging.WARNING, worker=self.handler.name, db=self.db,
                  seq=str(since)[:80], error=why)
        self._save_checkpoint(0, 0, 0, 0, f"checkpoint reset: since={str(since)[:80]}: {why}")
        self._verified = True
        return Step(0, 0, 0, False, (time.perf_counter() - started) * 1000)

    def _save_checkpoint(self, seq: Any, processed: int, writes: int, parked: int, error: str | None, *,
                         may_defer: bool = False) -> None:
        """The checkpoint moved past a batch: written now, or, for a batch with nothing to act on
        (``may_defer``), held in memory while the last write is less than ``defer_s`` old."""
        current = self.checkpoint()
        self._checkpoint = {
            "worker": self.handler.name,
            "db": self.db,
            "seq": seq,
            "processed": int(current.get("processed", 0)) + processed,
            "writes": int(current.get("writes", 0)) + writes,
            "parked": int(current.get("parked", 0)) + parked,
            "lastError": error if error is not None else current.get("lastError"),
            "updatedAt": now_iso(),
        }
        self._unsaved = True
        now = time.monotonic()
        window = self.defer_s if may_defer else self.act_defer_s
        overdue = self._due is not None and now >= self._due  # held since a batch that acted: waits no longer
        if overdue or not (window > 0 and now - self._saved_at < window):
            self.flush()
        elif not may_defer and self._due is None:
            self._due = self._saved_at + self.act_defer_s

    def due_in(self) -> float | None:
        """Seconds until a position held after a batch that acted is to be written (0 when overdue), or None
        when none is held: the runner's longpoll waits no longer than that, then flushes a quiet feed's."""
        if self._due is None or not self._unsaved:
            return None
        return max(0.0, self._due - time.monotonic())

    # ----------------------------------------------------------------------------- one batch

    def step(self) -> Step:
        started = time.perf_counter()
        since = self.checkpoint().get("seq", 0)
        if not self._verified:
            why = self._implausible(since)
            if why:
                return self._reset(since, why, started)
            self._verified = True
        # a handler may read the feed without the documents (and fetch the few it needs itself)
        with_docs = self.handler.feed_docs(self.db)
        ready, self._ready = self._ready, None
        try:
            if ready is not None and ready[0] == since:
                page = ready[1]  # read by the wait() that woke this step
            else:
                page = self.couch.changes(
                    self.db, since, limit=self.batch_size, include_docs=with_docs, conflicts=self.handler.conflicts,
                    style="all_docs",
                )
        except ServerError as exc:
            # CouchDB answers 400 to a malformed sequence; PouchDB Server may fail with a 500 instead. A 500 on a
            # well-formed checkpoint is the server's trouble, not the checkpoint's: let it through
            if since in (0, "0", None) or exc.status != 400:
                raise
            return self._reset(since, f"the server refused it: {_describe(exc)}", started)
        except RecursionError:
            # a document nested too deeply for the JSON reader: go one change at a time past it
            return self._step_one(since, with_docs, started)
        if not page.results:
            return Step(0, 0, 0, True, (time.perf_counter() - started) * 1000)
        self.handler.page_read(self.db, since, page.results, page.last_seq)
        relevant = [c for c in page.results if self._relevant(c)]
        writes, parked, error = 0, 0, None
        if relevant:
            writes, parked, error = self._apply(relevant)
        self._save_checkpoint(page.last_seq, len(page.results), writes, parked, error, may_defer=not relevant)
        ms = (time.perf_counter() - started) * 1000
        log_event(
            log, "batch", worker=self.handler.name, db=self.db, seq=str(page.last_seq), changes=len(page.results),
            handled=len(relevant), writes=writes, parked=parked, ms=round(ms, 1),
        )
        caught_up = len(page.results) < self.batch_size
        return Step(len(page.results), writes, parked, caught_up, ms)

    def _relevant(self, change: dict[str, Any]) -> bool:
        doc_id = str(change.get("id", ""))
        if doc_id.startswith("_design/") or doc_id.startswith("_local/"):
            return False
        if self.shard[1] > 1 and shard_of(doc_id, self.shard[1]) != self.shard[0]:
            return False
        doc = change.get("doc") or {}
        if doc.get("_conflicts"):
            return True
        # every leaf the change lists (style=all_docs) is our own write: nothing to react to. A leaf of someone
        # else's beside ours (a branch a device wrote under an id we copied) is not skipped
        leaves = {str(r.get("rev")) for r in change.get("changes", []) if r.get("rev")}
        if doc.get("_rev"):
            leaves.add(str(doc["_rev"]))
        return not leaves or not all((doc_id, rev) in self.handler.own_writes for rev in leaves)

    def _apply(self, changes: list[dict[str, Any]]) -> tuple[int, int, str | None]:
        try:
            return self.handler.process(self.db, changes), 0, None
        except ServerUnreachable:
            raise
        except Exception as exc:  # isolate the change(s) that fail
            log_event(log, "batch failed, retrying change by change", logging.WARNING, worker=self.handler.name,
                      db=self.db, changes=len(changes), error=_describe(exc))
        writes = parked = 0
        last_error: str | None = None
        for change in changes:
            for attempt in range(1, self.attempts + 1):
                try:
                    writes += self.handler.process(self.db, [change])
                    break
                except ServerUnreachable:
                    raise
                except Exception as exc:
                    last_error = f"{change.get('id')}: {_describe(exc)}"
                    if attempt == self.attempts:
                        record = parked_record(self.handler.name, self.db, change, _describe(exc), attempt)
                        write_once(self.couch, self.audit_db, record)
                        parked += 1
                        log_event(log, "parked", logging.ERROR, worker=self.handler.name, db=self.db,
                                  doc_id=change.get("id"), seq=str(change.get("seq")), error=_describe(exc),
                                  audit_id=record["_id"])
        return writes, parked, last_error

    def _step_one(self, since: Any, with_docs: bool, started: float) -> Step:
        """One change, read with its document if it can be; one that cannot be read is parked (without its body)
        and passed, so that one hostile document never stops the feed."""
        bare = self.couch.changes(self.db, since, limit=1, include_docs=False, style="all_docs")
        if not bare.results:
            return Step(0, 0, 0, True, (time.perf_counter() - started) * 1000)
        try:
            page = self.couch.changes(self.db, since, limit=1, include_docs=with_docs,
                                      conflicts=self.handler.conflicts, style="all_docs")
        except RecursionError:
            change = bare.results[0]
            record = parked_record(self.handler.name, self.db, change, "nested too deeply to be read", 1)
            write_once(self.couch, self.audit_db, record)
            log_event(log, "parked", logging.ERROR, worker=self.handler.name, db=self.db, doc_id=change.get("id"),
                      error="nested too deeply to be read", audit_id=record["_id"])
            self._save_checkpoint(bare.last_seq, 1, 0, 1, f"{change.get('id')}: nested too deeply to be read")
            return Step(1, 0, 1, False, (time.perf_counter() - started) * 1000)
        relevant = [c for c in page.results if self._relevant(c)]
        writes, parked, error = self._apply(relevant) if relevant else (0, 0, None)
        self._save_checkpoint(page.last_seq, len(page.results), writes, parked, error)
        return Step(len(page.results), writes, parked, False, (time.perf_counter() - started) * 1000)

    def pending(self, cap: int = 10_000) -> int:
        """Changes after the checkpoint (the lag), counted up to ``cap``."""
        return pending(self.couch, self.db, self.checkpoint().get("seq", 0), cap)


START: Doc = {"seq": 0, "processed": 0, "parked": 0, "writes": 0}


def read_checkpoint(couch: Couch, audit_db: str, worker: str, db: str, shard: tuple[int, int] = (0, 1)) -> Doc:
    """A worker's checkpoint of ``db`` as kept in the audit database (the start when there is none)."""
    return couch.get_local(audit_db, checkpoint_name(worker, db, shard)) or dict(START)


def pending(couch: Couch, db: str, since: Any, cap: int = 10_000) -> int:
    """Changes of ``db`` after ``since``, counted up to ``cap``."""
    return len(couch.changes(db, since, limit=cap, include_docs=False).results)


def checkpoint_name(worker: str, db: str, shard: tuple[int, int] = (0, 1)) -> str:
    """The name of a worker's checkpoint of ``db`` (a ``_local`` document of the audit database)."""
    suffix = f"-{shard[0]}of{shard[1]}" if shard[1] > 1 else ""
    return f"fieldsync-{worker}{suffix}@{db}"


def legacy_checkpoint_name(worker: str, shard: tuple[int, int] = (0, 1)) -> str:
    """Where checkpoints were kept before, in the followed database itself."""
    suffix = f"-{shard[0]}of{shard[1]}" if shard[1] > 1 else ""
    return f"fieldsync-{worker}{suffix}"


def _well_formed(seq: Any) -> bool:
    """A sequence as CouchDB 3 (``N-opaque``) or PouchDB Server (an integer) writes one."""
    if isinstance(seq, int) and not isinstance(seq, bool):
        return seq >= 0
    if not isinstance(seq, str) or len(seq) > 10_000:
        return False
    head, _, opaque = seq.partition("-")
    return head.isdigit() and (not opaque or all(c.isalnum() or c in "_-" for c in opaque))


def _seq_number(seq: Any) -> int:
    """The number a sequence starts with (CouchDB 3's ``N-opaque``; PouchDB Server's integer)."""
    text = str(seq) if seq is not None else "0"
    head = text.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def shard_of(key: str, count: int) -> int:
    """The share (0..count-1) a document id or a jurisdiction belongs to: stable across processes."""
    return zlib.crc32(key.encode("utf-8")) % count


def _describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:500]
