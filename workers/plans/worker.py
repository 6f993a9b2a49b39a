"""The plan worker, on the main database: rules in an explicit order (CHT Sentinel's transitions), each a
filter and an action, feeding the pure evaluator and writing what it decides.

| rule | when | what |
| --- | --- | --- |
| plan-activation | a plan is active at a revision not activated yet | queue its activation (a chore, in batches) |
| event-submission | an event syncs | post-save, cross-plan cancel, active plans evaluated for the event |
| task-state-change | a task changes (not by this worker) | its plan evaluated again for its entity |
| entity-registered | a structure or client arrives or changes | active plans of its area evaluated for it |
| location-archived | a location becomes inactive | its open tasks cancelled, audited |
| periodic | a plan's ``periodic`` trigger is due (a chore, every 15 minutes) | the plan's periodic actions |

Each change is evaluated with a lookup that sees the writes of the changes before it in the batch
(:class:`~workers.readmodel.lookup.PendingLookup`), and a batch's outcomes are written together by
:func:`workers.plans.outcomes.write_outcomes`: idempotent (deterministic ids), a raced update is a conflict (the
batch is retried change by change with fresh reads, then a change that still fails is parked; a periodic run
tries again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from validators.opensrp import parse_document
from workers.couch import Couch, Doc
from workers.errors import Conflict, ServerUnreachable
from workers.evaluator import flows
from workers.evaluator import tasks as T
from workers.evaluator.engine import PERIODIC, evaluate_entity, periodic
from workers.evaluator.fhirpath import PathEngine
from workers.evaluator.lookup import is_jurisdiction, parent_id, residence
from workers.evaluator.outcome import Outcome
from workers.follower import Worker
from workers.logs import log_event
from workers.parallel import Pending
from workers.plans import activation
from workers.plans.outcomes import write_outcomes
from workers.plans.periodic import PeriodicClock
from workers.readmodel.feed import ReadModel
from workers.readmodel.lookup import IndexLookup, PendingLookup
from workers.settings import Settings

log = logging.getLogger("fieldsync.plans")

CHECKED_TYPES = {"Plan", "Event", "Task"}
CHORE_SLICE = 0.5  # seconds of activation between two looks at the feeds
# seconds after a feed batch with others' changes (devices' events, registrations) during which an activation
# keeps one write in flight instead of PIPELINE: the server's time goes to the people waiting for their tasks
EVENTS_QUIET_S = 3.0
# how long a feed page that lists writes of this worker still in flight waits for their answers (usually a few
# ms behind the feed) before their bodies are read instead
INFLIGHT_WAIT_S = 0.5
OPEN_STATUSES = {T.READY, "In Progress", "Draft", "Requested", "Received", "Accepted"}
ARCHIVED_STATUSES = {"Inactive", "Archived", "Retired"}


@dataclass(frozen=True)
class Rule:
    name: str
    applies: Callable[[Doc], bool]
    apply: Callable[[Doc, IndexLookup, datetime], Outcome | None]


class PlanWorker(Worker):
    name = "plans"
    conflicts = False
    # pages of 5 x FIELDSYNC_BATCH_SIZE changes: read without documents, most of them this worker's own writes
    batch_factor = 5

    def __init__(self, couch: Couch, settings: Settings) -> None:
        super().__init__()
        self.couch = couch
        self.settings = settings
        self.paths = PathEngine()
        self.db = settings.dbs.main
        self._activations: dict[str, activation.Activation] = {}
        self._events_at = float("-inf")  # when process() last had people's changes (not a plan's) to evaluate
        # the local read model every decision reads (no view query on the hot path): see workers.readmodel
        self.model = ReadModel(couch, self.db, readmodel_path(settings))
        self.model.in_flight = self._wait_in_flight
        self._scanned = False
        # the (id, rev) of the changes of the last page that the read model followed (page_read): a batch of
        # them is in the index already
        self._fed: frozenset[tuple[str, str]] = frozenset()
        self.periodic_clock = PeriodicClock()
        # called with the tasks a feed batch wrote (an event's, a task change's), once the batch is written:
        # the sync worker of the same process copies them to their areas at once (its fast lane)
        self.written_listeners: list[Callable[[list[Doc]], object]] = []
        self.rules: tuple[Rule, ...] = (
            Rule("plan-activation", lambda d: d.get("type") == "Plan", self._on_plan),
            Rule("event-submission", lambda d: d.get("type") == "Event", self._on_event),
            Rule("task-state-change", lambda d: d.get("type") == "Task", self._on_task),
            Rule("location-archived", _is_archived_location, self._on_archived),
            Rule("entity-registered", lambda d: d.get("type") in ("Feature", "Client") and not _is_archived_location(d),
                 self._on_entity),
        )

    def follows(self, kind: str) -> bool:
        return kind == "main"

    def feed_docs(self, db: str) -> bool:
        """The feed is read without documents: the read model fetches only what it does not hold yet (most
        changes during an activation are this worker's own writes, in the index already)."""
        return False

    def page_read(self, db: str, since: Any, changes: list[dict[str, Any]], last_seq: Any) -> None:
        """The read model follows the feed through the follower's pages (:meth:`ReadModel.follow`): every
        change is read once, not once by the follower and again by the index. The batch that follows is in the
        index then, so :meth:`process` need not read the feed."""
        if db == self.db:
            self.model.follow(since, changes, last_seq)
            self._fed = frozenset(ref for change in changes for ref in _refs(change))
            self._claim_inflight(changes)

    def _wait_in_flight(self, ids: list[str]) -> bool:
        """For the read model, about to read documents the feed lists at revisions it does not hold: those that
        a write of this worker still in flight holds are waited for (``INFLIGHT_WAIT_S`` at most). Their
        answers are usually a few ms behind the feed, and bring their revisions into the index (the writer
        remembers them before it settles): otherwise 27,000 of an activation's 68,000 tasks were read back
        (CouchDB, 20,000 structures: a fifth of the server's CPU during the activation)."""
        flying = [doc_id for doc_id in ids if self.own_writes.expecting(doc_id)]
        if not flying:
            return False
        self.own_writes.wait_settled(flying, INFLIGHT_WAIT_S)
        return True

    def _inflight(self, changes: list[dict[str, Any]]) -> dict[str, str]:
        """The ids of ``changes`` that a write of this worker still in flight holds, with the one leaf the feed
        lists, not known as this worker's own (yet)."""
        out: dict[str, str] = {}
        for change in changes:
            doc_id = str(change.get("id", ""))
            leaves = [str(r.get("rev")) for r in change.get("changes", []) if r.get("rev")]
            if (len(leaves) == 1 and not change.get("deleted") and self.own_writes.expecting(doc_id)
                    and (doc_id, leaves[0]) not in self.own_writes):
                out[doc_id] = leaves[0]
        return out

    def _claim_inflight(self, changes: list[dict[str, Any]]) -> None:
        """An activation's task that the feed lists before its writer has the answer (so before its revision is
        known as this worker's own) is recognised by its content, as the index has just read it: it is not
        handed to :meth:`process` as if someone else had written it. Otherwise the feed rule would evaluate
        the activation's own tasks, and each such batch would pass for people's changes and slow the
        activation down (:meth:`activation_room`): awake on CouchDB, half the activation's speed (session 10)."""
        unknown = self._inflight(changes)
        for doc_id, held in self.model.store.bodies(list(unknown)):  # one read, not one per task
            if held.get("_rev") == unknown[doc_id]:
                self.own_writes.claim(held)

    # ------------------------------------------------------------------------------------------ feed

    def process(self, db: str, changes: list[dict[str, Any]]) -> int:
        """Each change evaluated over the read model plus what the changes before it decided; the whole batch's
        audit records and tasks written at the end, in one request each (50 devices' events arriving together
        are one write, not 50). An outcome that writes a task another one of the batch writes too is not mixed
        with it: what is pending is written first, and the change is evaluated again over it."""
        self._scan()  # activations to resume are known before any feed rule asks whether one covers an entity
        # the page of this batch was handed to the index (page_read): it holds the batch. Once only: a batch
        # retried change by change after a raced update reads the feed to its end first (fresh reads)
        fed, self._fed = self._fed, frozenset()
        if not all(_refs(change) <= fed for change in changes):
            self.model.catch_up()  # the index has read the feed to its end: it holds at least this batch
        lookup = IndexLookup(self.model)
        pending = Outcome()
        decided: list[tuple[Doc, str, Outcome]] = []
        written: list[Doc] = []
        for change in changes:
            doc = change.get("doc") or self.model.store.get(str(change.get("id")))
            if not doc or doc.get("type") != "Plan":
                # the follower hands over others' changes only: people's, waiting for their tasks. A plan's is
                # an admin's, and the activation it starts must not slow itself down (activation_room)
                self._events_at = time.monotonic()
            if not doc or doc.get("_deleted"):
                continue
            for rule in self.rules:
                if not rule.applies(doc):
                    continue
                if doc.get("type") in CHECKED_TYPES:
                    parse_document(doc)  # a document that breaks the contract is parked with id, field, reason
                outcome = rule.apply(doc, PendingLookup(self.model, pending), datetime.now(UTC))
                if outcome is not None and pending.task_writes.keys() & outcome.task_writes.keys():
                    written += self._write(db, decided, lookup)
                    pending, decided = Outcome(), []
                    outcome = rule.apply(doc, PendingLookup(self.model, pending), datetime.now(UTC))
                if outcome is not None and (outcome.tasks or outcome.audit):
                    decided.append((doc, rule.name, outcome))
                    pending.merge(outcome)
                break
        written += self._write(db, decided, lookup)
        self._tell(written)
        return len(written)

    def _write(self, db: str, decided: list[tuple[Doc, str, Outcome]], lookup: IndexLookup) -> list[Doc]:
        stored = write_outcomes(self.couch, db, self.settings.dbs.audit, self.own_writes, decided)
        lookup.remember(stored)
        return stored

    def _tell(self, written: list[Doc]) -> None:
        """Hand a batch's tasks to the listeners. A listener that fails is logged and ignored: the tasks are in
        the main database, and its feed carries them to whoever follows it."""
        if not written:
            return
        for listener in self.written_listeners:
            try:
                listener(written)
            except Exception as exc:
                log_event(log, "listener failed", logging.WARNING, tasks=len(written), error=str(exc))

    # ------------------------------------------------------------------------------------------ rules

    def _on_plan(self, plan: Doc, lookup: IndexLookup, now: datetime) -> Outcome | None:
        if plan.get("status") == "active":
            progress = activation.start(self.couch, self.db, plan)
            if progress is not None:
                self._activations[plan["_id"]] = self._activation(plan, progress)
        else:
            self._activations.pop(plan["_id"], None)
        return None

    def _on_event(self, event: Doc, lookup: IndexLookup, now: datetime) -> Outcome:
        return flows.on_event(event, lookup, now, paths=self.paths)

    def _on_task(self, task: Doc, lookup: IndexLookup, now: datetime) -> Outcome:
        return flows.on_task_change(task, lookup, now, paths=self.paths)

    def _on_entity(self, doc: Doc, lookup: IndexLookup, now: datetime) -> Outcome:
        """A structure or client registered (or edited), possibly offline before a plan was activated: every
        active plan of its area evaluated for it."""
        entity = str(doc.get("_id"))
        if not lookup.any_active_plan():
            return Outcome()
        if doc.get("type") == "Feature":
            if is_jurisdiction(doc):
                return Outcome()
            area = parent_id(doc)
        else:
            home = residence(doc)
            structure = lookup.location(home) if home else None
            area = parent_id(structure) if structure else None
        outcome = Outcome()
        if not area:
            return outcome
        for plan in lookup.active_plans_for(area):
            job = self._activations.get(plan["_id"])
            if job is not None and job.covers(area):
                continue  # the plan's activation has yet to walk this area: it will evaluate the entity
            evaluate_entity(plan, entity, lookup, now, paths=self.paths, outcome=outcome)
        return outcome

    def _on_archived(self, location: Doc, lookup: IndexLookup, now: datetime) -> Outcome:
        """A location archived: its open tasks (and those of the families and members living there) are
        cancelled, each one audited."""
        outcome = Outcome()
        entities = [location["_id"]]
        families = lookup.families_at(location["_id"])
        entities += [f["_id"] for f in families]
        for members in lookup.members_of_many([f["_id"] for f in families]).values():
            entities += [m["_id"] for m in members]
        for tasks in lookup.tasks_for_many(entities).values():
            for task in tasks:
                if T.normalise_status(str(task.get("status") or "")) not in OPEN_STATUSES:
                    continue
                outcome.write(T.updated(task, {"status": T.CANCELLED, "businessStatus": "Not Eligible",
                                               "statusReason": "Location archived"}, now))
                outcome.audit.append(T.cancellation(task, "Location archived", now, location=location["_id"]))
        return outcome

    # ------------------------------------------------------------------------------------------ activation

    def _activation(self, plan: Doc, progress: Doc) -> activation.Activation:
        return activation.Activation(self.couch, self.db, plan, progress, self.paths, self.own_writes, self.model,
                                     batch_size=max(activation.WRITE_CHUNK, self.settings.batch_size),
                                     shard=self.settings.shard, audit_db=self.settings.dbs.audit,
                                     attempts=self.settings.change_attempts)

    def _scan(self) -> None:
        if self._scanned or self.couch.db_info(self.db) is None:
            return
        self.model.catch_up()
        for plan, progress in activation.running(self.couch, self.db, IndexLookup(self.model).active_plans()):
            self._activations.setdefault(plan["_id"], self._activation(plan, progress))
        self._scanned = True

    def activation_chore(self) -> bool | Pending:
        """Advance running activations for up to ``CHORE_SLICE`` seconds (then the runner reads the feeds
        again: an event is held back by at most one slice), or until the activation's writes in flight fill its
        pipeline: then the writes to wait for (:class:`~workers.parallel.Pending`), which the runner waits for
        outside the worker's turn. False when none is running."""
        self._scan()
        deadline = time.monotonic() + CHORE_SLICE
        busy = False
        while self._activations:
            plan_id, job = next(iter(self._activations.items()))
            stepped = job.step(room=self.activation_room())
            if isinstance(stepped, Pending):
                return stepped
            if stepped:
                busy = True
                if time.monotonic() >= deadline:
                    return True
                continue
            del self._activations[plan_id]
        return busy


    def activation_room(self) -> int:
        """Writes an activation may have in flight: fewer while people's changes are coming in (a device's
        event waits for a server that is also taking the activation's writes of 450 tasks each)."""
        return 1 if time.monotonic() - self._events_at < EVENTS_QUIET_S else activation.PIPELINE

    # ------------------------------------------------------------------------------------------ periodic

    def periodic_chore(self) -> bool:
        """Run the plans' periodic triggers when due (see :mod:`workers.plans.periodic`); the first share only
        when the worker runs in shares. True when it wrote something."""
        now = datetime.now(UTC)
        window = self.periodic_clock.window(now)
        if window is None or self.settings.shard[0] != 0 or self.couch.db_info(self.db) is None:
            return False
        written = self.run_periodic(now, window)
        self.periodic_clock.ran(now)
        return written > 0

    def run_periodic(self, now: datetime, window: timedelta) -> int:
        """Every active plan's periodic actions due within ``window`` before ``now``, written like any outcome
        (audited; a raced update evaluated again with fresh reads). A plan that fails is logged and left to
        the next run; the others go on."""
        written = 0
        self.model.catch_up()
        for plan in IndexLookup(self.model).active_plans():
            for attempt in range(1, self.settings.change_attempts + 1):
                lookup = IndexLookup(self.model)
                try:
                    outcome = periodic(plan, lookup, now, window=window, paths=self.paths)
                    written += len(self._write(self.db, [(plan, PERIODIC, outcome)], lookup))
                    break
                except ServerUnreachable:
                    raise
                except Conflict as exc:
                    if attempt == self.settings.change_attempts:
                        log_event(log, "periodic plan failed", logging.ERROR, plan=plan.get("_id"), error=str(exc))
                    self.model.catch_up()
                except Exception as exc:  # a plan the evaluator cannot read (the feed parked it): the others go on
                    log_event(log, "periodic plan failed", logging.ERROR, plan=plan.get("_id"), error=str(exc))
                    break
        log_event(log, "periodic plans", tasks=written, window_s=int(window.total_seconds()))
        return written


def readmodel_path(settings: Settings) -> Path:
    """Where the plan worker keeps its read model: the data directory, one file per database and share."""
    i, n = settings.shard
    suffix = f"-{i}of{n}" if n > 1 else ""
    return Path(settings.data_dir) / "readmodel" / f"{settings.dbs.main}{suffix}.sqlite"


def _refs(change: dict[str, Any]) -> set[tuple[str, str]]:
    doc_id = str(change.get("id"))
    return {(doc_id, str(r.get("rev"))) for r in change.get("changes", [])} or {(doc_id, "")}


def _is_archived_location(doc: Doc) -> bool:
    status = (doc.get("properties") or {}).get("status")
    return doc.get("type") == "Feature" and isinstance(status, str) and status in ARCHIVED_STATUSES
