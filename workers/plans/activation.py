"""Plan activation in batches, with a persisted progress record, resumable after a kill.

Progress lives in ``_local/fieldsync-activation-<plan>`` of the main database (never replicated):
the plan revision it activates, the jurisdictions done and in all, the last jurisdiction whose tasks are all
written (the resume point), the plan's tasks (``tasks``) and how many of them this activation wrote
(``tasksWritten``; the others existed already), and per-jurisdiction counts. A jurisdiction is marked done only
after its last batch is written; a kill replays at most that jurisdiction, whose tasks have deterministic ids
that exist already, so the replay writes nothing new: no duplicates, no gaps.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from workers.audit import now_iso, parked_record, write_once
from workers.couch import Couch, Doc, WriteResult
from workers.errors import ServerUnreachable
from workers.evaluator.engine import Batch, activation_batches
from workers.evaluator.fhirpath import PathEngine
from workers.evaluator.tree import jurisdictions
from workers.follower import OwnWrites, shard_of
from workers.logs import log_event
from workers.parallel import Pending
from workers.readmodel.feed import ReadModel
from workers.readmodel.lookup import IndexLookup

log = logging.getLogger("fieldsync.activation")

RUNNING, DONE, FAILED = "running", "done", "failed"
# tasks per _bulk_docs request at least: CouchDB 3 takes 200-document requests at about half the rate of
# 500-document ones (bench: 1,087-1,275 vs 1,943-2,441 docs/s on one node), and 500 is what the raw baseline uses
WRITE_CHUNK = 500
# requests' worth of tasks evaluated, then sorted by id, before they are written (one writer thread writes them
# in turn): a task id begins with its jurisdiction's hash (workers.evaluator.tasks.task_id), so a group of
# whole jurisdictions in id order fills CouchDB's id B-tree leaf by leaf. In evaluation order, each request of
# 500 touched leaves across the whole of its jurisdiction's range (raw _bulk_docs of the same 34,000 tasks, one
# node: 196-233 us of server CPU per task in evaluation order, 164-180 sorted per jurisdiction)
GROUP_REQUESTS = 4
PEOPLE_CHUNK = 100  # tasks per request while people's changes come in (PlanWorker.activation_room)
# groups of writes in flight at once, each on a writer thread of its own (one request of each at a time): while
# one waits for the server, the other's answer is recorded in the read model, and the main thread evaluates the
# next group
PIPELINE = 2


def progress_name(plan_id: str) -> str:
    return f"fieldsync-activation-{plan_id}"


def start(couch: Couch, db: str, plan: Doc) -> Doc | None:
    """Record that ``plan`` (at its current revision) must be activated; None when that is recorded already."""
    name = progress_name(plan["_id"])
    current = couch.get_local(db, name)
    if current is not None and current.get("planRev") == plan["_rev"]:
        return None
    progress: Doc = {
        "plan": plan["_id"], "planRev": plan["_rev"], "state": RUNNING, "resumeAfter": None,
        "jurisdictionsDone": 0, "jurisdictionsTotal": None, "tasks": 0, "tasksWritten": 0, "entities": 0,
        "conditionEvaluations": 0, "jurisdictions": {}, "startedAt": now_iso(), "finishedAt": None,
    }
    couch.put_local(db, name, progress)
    log_event(log, "activation queued", db=db, plan=plan["_id"], plan_rev=plan["_rev"])
    return progress


class Activation:
    """One plan's activation, advanced one batch at a time by :meth:`step`."""

    def __init__(self, couch: Couch, db: str, plan: Doc, progress: Doc, paths: PathEngine, own: OwnWrites,
                 model: ReadModel, *, batch_size: int = 500, shard: tuple[int, int] = (0, 1), audit_db: str = "",
                 attempts: int = 3) -> None:
        self.couch = couch
        self.db = db
        self.plan = plan
        self.progress = progress
        self.paths = paths
        self.own = own
        self.model = model
        self.batch_size = batch_size
        self.shard = shard
        self._batches: Iterator[Batch] | None = None
        # evaluated, waiting for room in the pipeline: a request's worth of batches (WRITE_CHUNK tasks, but at the end)
        self._next: tuple[list[Batch], float] | None = None
        self._carry: list[Batch] = []  # evaluated, fewer than WRITE_CHUNK tasks in all: the next request's start
        self._exhausted = False  # every batch evaluated
        self._pending_tasks = 0
        self._pending_written = 0
        self._reload = False
        self._current: str | None = None
        self._failures = 0
        self.audit_db = audit_db
        self.attempts = attempts
        # the writes of the last batches overlap the evaluation of the next (PIPELINE writer threads), oldest first
        self._inflight: deque[tuple[list[Batch], Future[WriteResult] | None, float]] = deque()
        self._pool: ThreadPoolExecutor | None = None
        self._writers = threading.local()  # each writer thread's own connection pool

    @property
    def plan_id(self) -> str:
        return str(self.plan["_id"])

    def covers(self, jurisdiction_id: str) -> bool:
        """True while this activation has yet to begin ``jurisdiction_id``: it will read (fresh) every entity
        of it then, so the feed rule can leave that entity to it."""
        begun = [*self._carry, *(self._next[0] if self._next else ()),
                 *(batch for group, _, _ in self._inflight for batch in group)]
        return (self.progress.get("state") == RUNNING and jurisdiction_id != self._current
                and jurisdiction_id not in self.progress.get("jurisdictions", {})
                and all(batch.jurisdiction_id != jurisdiction_id for batch in begun))

    def _open(self) -> Iterator[Batch]:
        self.model.refresh()
        lookup = IndexLookup(self.model, fresh_per_jurisdiction=True)
        if self.progress.get("jurisdictionsTotal") is None:
            codes = [j.get("code") for j in self.plan.get("jurisdiction") or []]
            self.progress["jurisdictionsTotal"] = sum(1 for _ in jurisdictions([c for c in codes if c], lookup))
        count = self.shard[1]
        return activation_batches(self.plan, lookup, evaluation_time(self.progress), batch_size=self.batch_size,
                                  resume_after=self.progress.get("resumeAfter"), paths=self.paths,
                                  mine=(lambda jid: shard_of(jid, count) == self.shard[0]) if count > 1 else None)

    def step(self, room: int = PIPELINE) -> bool | Pending:
        """Evaluate the next batch and hand it to a writer; False once the activation is done. When the writes
        in flight fill the pipeline (``room`` of them, at most ``PIPELINE``), the batch evaluated stays ready
        and :class:`Pending` says what to wait for: the caller waits outside the worker's turn
        (:mod:`workers.runner`), so an activation never holds a feed batch back while the server takes its
        writes. On any error (the server gone, a write refused) the walk is dropped and reopened later from the
        persisted progress: a generator that raised cannot go on, and the batch not yet recorded as done is
        replayed without duplicates."""
        try:
            return self._step(max(1, min(room, PIPELINE)))
        except Exception as exc:
            self._batches = None
            self._next = None
            self._carry = []
            self._exhausted = False
            self._drop_inflight()
            self._pending_tasks = self._pending_written = 0
            self._reload = True  # resume from what was persisted, once the server answers
            if isinstance(exc, ServerUnreachable):
                raise
            self._failures += 1
            log_event(log, "activation error", logging.WARNING, db=self.db, plan=self.plan_id,
                      attempt=self._failures, error=f"{exc.__class__.__name__}: {exc}")
            if self._failures >= self.attempts:
                self._fail(exc)
                return False
            return True

    def _drop_inflight(self) -> None:
        """After an error: wait for the writes still in flight (their tasks are harmless: a replay finds them)
        and forget them; the jurisdictions not recorded as done are replayed from the persisted progress."""
        while self._inflight:
            future = self._inflight.popleft()[1]
            if future is not None:
                with contextlib.suppress(Exception):  # the walk is reopened from the progress whatever happened
                    future.result()

    def _fail(self, exc: Exception) -> None:
        """Stop trying: the progress says failed, and the plan is parked in the audit database with why."""
        reason = f"{exc.__class__.__name__}: {exc}"[:1000]
        self.progress = {**(self.couch.get_local(self.db, progress_name(self.plan_id)) or self.progress),
                         "state": FAILED, "lastError": reason, "finishedAt": now_iso()}
        self.couch.put_local(self.db, progress_name(self.plan_id), self.progress)
        change = {"id": self.plan_id, "seq": None, "doc": self.plan}
        write_once(self.couch, self.audit_db, parked_record("plans", self.db, change, reason, self._failures))
        log_event(log, "activation failed: parked", logging.ERROR, db=self.db, plan=self.plan_id, error=reason)

    def _step(self, room: int) -> bool | Pending:
        if self._reload:
            self.progress = self.couch.get_local(self.db, progress_name(self.plan_id)) or self.progress
            self._reload = False
        if self.progress.get("state") in (DONE, FAILED):
            return False
        if self._batches is None:
            self._batches = self._open()
        self._settle_ended()
        if self._next is None and not self._exhausted:
            self._fill(WRITE_CHUNK * (GROUP_REQUESTS if room >= PIPELINE else 1))
        if self._next is not None:
            if len(self._inflight) >= room:
                return self._waiting()
            group, started = self._next
            self._next = None
            # of this worker's share only (activation_batches' ``mine``)
            docs = sorted((dict(t) for batch in group for t in batch.tasks), key=itemgetter("_id"))
            # while people's changes come in (room 1), the batch goes in smaller requests: the database's
            # updater takes one request at a time, and a device's event waits behind the one it meets
            chunk = WRITE_CHUNK if room >= PIPELINE else PEOPLE_CHUNK
            self._inflight.append((group, self._writer().submit(self._write, docs, chunk) if docs else None,
                                   started))
            return True
        if self._inflight:
            return self._waiting()
        self.model.refresh()  # the index reads past the activation's own writes (its position in status)
        self.progress["state"] = DONE
        self.progress["finishedAt"] = now_iso()
        self.couch.put_local(self.db, progress_name(self.plan_id), self.progress)
        log_event(log, "activation done", db=self.db, plan=self.plan_id,
                  jurisdictions=self.progress["jurisdictionsDone"], tasks=self.progress["tasksWritten"])
        return False

    def _fill(self, size: int) -> None:
        """Evaluate batches (while the previous groups are being written) until they hold ``size`` tasks, a
        multiple of ``WRITE_CHUNK``, or until the walk ends: the tail of one jurisdiction and the start of the
        next go in one group, and every request is full (CouchDB takes full requests at a higher rate per task:
        a jurisdiction's 1,700 tasks would otherwise be written as 500, 500, 500 and 200). A batch is split
        where the group is full; its parts are recorded in order, a jurisdiction as done with the group that
        holds its last part. Tasks are never held back while no write is in flight: the server would wait for
        them."""
        started = time.perf_counter()
        held = sum(len(b.tasks) for b in self._carry)
        assert self._batches is not None
        while held < size and not (self._carry and not self._inflight):
            try:
                batch = next(self._batches)
            except StopIteration:
                self._exhausted = True
                break
            self._current = batch.jurisdiction_id
            self._carry.append(batch)
            held += len(batch.tasks)
        if held > size:
            over = self._carry.pop()
            room = len(over.tasks) - (held - size)
            self._carry.append(Batch(over.jurisdiction_id, over.tasks[:room], False, over.condition_evaluations,
                                     over.entities))
            rest = [Batch(over.jurisdiction_id, over.tasks[room:], over.last, 0, 0)]
        else:
            rest = []
        if self._carry:
            self._next = (self._carry, started)
        self._carry = rest

    def _waiting(self) -> Pending:
        """The writes to wait for before the next step can go on (the oldest ends first, mostly)."""
        return Pending(tuple(future for _, future, _ in self._inflight if future is not None))

    def _writer(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=PIPELINE,
                                            thread_name_prefix=f"activation-{self.plan_id[:8]}")
        return self._pool

    def _write(self, docs: list[Doc], chunk: int = WRITE_CHUNK) -> WriteResult:
        """In a writer thread: the group's ``_bulk_docs`` requests in turn, on the thread's own connections;
        after each, what it wrote is made known (own writes, the read model on the thread's own SQLite
        connection). The progress is the main thread's, recorded in order by :meth:`_settle_ended`."""
        couch: Couch | None = getattr(self._writers, "couch", None)
        if couch is None:
            couch = self._writers.couch = self.couch.clone()
        # the feed may list these writes before their answers are in: the follower recognises them by content
        self.own.expect(docs)
        result, settled = WriteResult(), 0
        try:
            for start in range(0, len(docs), chunk):
                part = docs[start : start + chunk]
                written = couch.save_many(self.db, part, chunk=chunk)
                # in the index, then known as our own by revision, and only then no longer in flight: a follower
                # that has waited for them (PlanWorker._wait_in_flight) finds them in the index and need not
                # read them
                ok = {r["id"] for r in written.ok}
                self.model.remember([d for d in part if d["_id"] in ok and d.get("_rev")])
                self.own.add_results(written.ok)
                self.own.settle(d["_id"] for d in part)
                settled = start + len(part)
                result.extend(written)
        finally:  # a refused request: none of the group is in flight any more
            self.own.settle(d["_id"] for d in docs[settled:])
        return result

    def _settle_ended(self) -> None:
        """Record the writes that have ended, oldest first and in order (a write still in flight stops the
        recording of the ones after it): after a jurisdiction's last batch, the persisted progress (never
        before its tasks are written)."""
        while self._inflight and (self._inflight[0][1] is None or self._inflight[0][1].done()):
            self._record(*self._inflight.popleft())

    def _record(self, group: list[Batch], future: Future[WriteResult] | None, started: float) -> None:
        ok: set[str] = set()
        if future is not None:
            # an error here drops the walk: step() reopens it from the progress. Not ok: a conflict, the task
            # exists already (a replay, another worker)
            ok = {str(r["id"]) for r in future.result().ok}
        for batch in group:
            self._record_batch(batch, sum(1 for t in batch.tasks if t["_id"] in ok), started)

    def _record_batch(self, batch: Batch, written: int, started: float) -> None:
        self._pending_written += written
        self._pending_tasks += len(batch.tasks)
        self.progress["entities"] += batch.entities
        self.progress["conditionEvaluations"] += batch.condition_evaluations
        if batch.last:
            entry: dict[str, Any] = self.progress["jurisdictions"].setdefault(batch.jurisdiction_id, {})
            entry.update({"tasks": self._pending_tasks, "written": self._pending_written, "done": True})
            self.progress["tasks"] += self._pending_tasks
            self.progress["tasksWritten"] += self._pending_written
            self.progress["jurisdictionsDone"] += 1
            self.progress["resumeAfter"] = batch.jurisdiction_id
            self._pending_tasks = self._pending_written = 0
            self.couch.put_local(self.db, progress_name(self.plan_id), self.progress)
        log_event(log, "activation batch", db=self.db, plan=self.plan_id, jurisdiction=batch.jurisdiction_id,
                  tasks=written, entities=batch.entities, done=self.progress["jurisdictionsDone"],
                  total=self.progress["jurisdictionsTotal"], ms=round((time.perf_counter() - started) * 1000, 1))


def evaluation_time(progress: Doc) -> datetime:
    """The time an activation evaluates its plan at, whenever its walk is (re)opened: when it was queued
    (``startedAt`` of its progress). A replayed jurisdiction (after a kill, a lost node, a refused write) thus
    writes the very bodies of the first attempt, hence the very revisions: a copy of the database that took the
    first write alone (a cluster node lost before it passed it on) merges with the replay when it comes back,
    instead of holding a second leaf of the task."""
    started = progress.get("startedAt")
    if isinstance(started, str):
        with contextlib.suppress(ValueError):
            at = datetime.fromisoformat(started.replace("Z", "+00:00"))
            return at if at.tzinfo else at.replace(tzinfo=UTC)
    return datetime.now(UTC)


def running(couch: Couch, db: str, plans: list[Doc]) -> list[tuple[Doc, Doc]]:
    """(plan, progress) of every activation still running, from the active plans of the database (``plans``:
    as the caller knows them, from its read model)."""
    out: list[tuple[Doc, Doc]] = []
    for plan in plans:
        progress = couch.get_local(db, progress_name(plan["_id"]))
        if progress is None or progress.get("planRev") != plan["_rev"]:
            progress = start(couch, db, plan)
        if progress is not None and progress.get("state") == RUNNING:
            out.append((plan, progress))
    return out


def progress_of(couch: Couch, db: str) -> list[Doc]:
    rows = couch.view(db, "fieldsync", "plans_by_status", include_docs=False)
    seen: list[Doc] = []
    for plan_id in sorted({row["id"] for row in rows}):
        progress = couch.get_local(db, progress_name(plan_id))
        if progress is not None:
            seen.append(progress)
    return seen
