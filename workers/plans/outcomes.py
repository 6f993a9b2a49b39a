"""Writing what the evaluator decided: the one path of every caller in the plan worker (the feed's rules and
the plans' periodic triggers).

Audit records first (deterministic ids: written once), then the tasks in one request. New tasks have
deterministic ids (a second creation is a 409, ignored); updates carry the revision they were computed from,
so a 409 on an update means the task changed meanwhile: :class:`~workers.errors.Conflict` is raised and the
caller evaluates again with fresh reads. What was written is recorded as the worker's own writes (its feed
skips them) and returned with the new revisions.
"""

from __future__ import annotations

import logging

from workers.audit import now_iso, stable_id, write_many_once
from workers.couch import Couch, Doc
from workers.errors import Conflict
from workers.evaluator import tasks as T
from workers.evaluator.outcome import Outcome
from workers.follower import OwnWrites
from workers.logs import log_event

log = logging.getLogger("fieldsync.plans")


def decision_record(db: str, cause: Doc, rule: str, record: Doc) -> Doc:
    """An evaluator's record (a task cancelled...) as an audit document: one id per task and causing revision,
    the database, the rule and the document that caused it."""
    kind = "cancellation" if record.get("type") == T.CANCELLATION else str(record.get("type", rule))
    return {
        **record,
        "_id": stable_id(kind, db, str(record.get("task")), str(cause.get("_id")), str(cause.get("_rev"))),
        "kind": kind,
        "db": db,
        "docId": record.get("task"),
        "rule": rule,
        "cause": {"id": cause.get("_id"), "rev": cause.get("_rev"), "type": cause.get("type")},
        "createdAt": now_iso(),
    }


def write_outcomes(couch: Couch, db: str, audit_db: str, own_writes: OwnWrites,
                   decided: list[tuple[Doc, str, Outcome]]) -> list[Doc]:
    """Write the outcomes of several causes (a feed batch's changes) at once: every audit record in one
    request, then every task in one. No two outcomes may write the same task (the caller writes what is pending
    before evaluating a change again over it). Returns the tasks written, with their new revisions."""
    decided = [(cause, rule, outcome) for cause, rule, outcome in decided if outcome.tasks or outcome.audit]
    if not decided:
        return []
    records = [decision_record(db, cause, rule, record) for cause, rule, outcome in decided for record in outcome.audit]
    write_many_once(couch, audit_db, records)
    tasks = [task for _, _, outcome in decided for task in outcome.tasks]
    result = couch.save_many(db, [dict(t) for t in tasks])
    own_writes.add_results(result.ok)
    causes = {task["_id"]: str(cause.get("_id")) for cause, _, outcome in decided for task in outcome.tasks}
    raced = [tid for tid in result.conflicts if any(t["_id"] == tid and t.get("_rev") for t in tasks)]
    if raced:
        raise Conflict(f"tasks changed while {', '.join(sorted({causes[t] for t in raced}))} "
                       f"{'was' if len({causes[t] for t in raced}) == 1 else 'were'} evaluated: {', '.join(raced)}")
    if result.errors:
        raise Conflict(f"tasks not written for {', '.join(sorted({c for c in causes.values()}))}: {result.errors}")
    by_id = {t["_id"]: t for t in tasks}
    stored = [{**by_id[res["id"]], "_rev": res["rev"]} for res in result.ok]
    ok, existing = {str(res["id"]) for res in result.ok}, set(result.conflicts)
    for cause, rule, outcome in decided:
        ids = set(outcome.task_writes)
        log_event(log, "evaluated", db=db, doc_id=cause.get("_id"), rule=rule, tasks=len(ids & ok),
                  existing=len(ids & existing), audit=len(outcome.audit))
    return stored
