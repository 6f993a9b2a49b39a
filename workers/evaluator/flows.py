"""What the plan worker calls for a synced event or task: post-save, cross-plan cancel, plan evaluation.

``on_event`` is the whole server-side reaction to an event, in the seed's order: the form's post-save logic
(its task's business status; a Completed task for work done without one), the cross-plan cancel (Ready tasks
of the same entity and code in other active plans), then every active plan of the event's jurisdiction
evaluated for the event (event-submission triggers). Each step sees the writes of the steps before it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from workers.evaluator import tasks as T
from workers.evaluator.engine import evaluate_entity, evaluate_event, event_jurisdiction
from workers.evaluator.fhirpath import PathEngine
from workers.evaluator.lookup import ACTIVE, Lookup, residence
from workers.evaluator.outcome import Outcome, Overlay

Doc = dict[str, Any]

REGISTER_STRUCTURE = "Register_Structure"
FAMILY_REGISTRATION = "Family_Registration"
FAMILY_MEMBER_REGISTRATION = "Family_Member_Registration"

# the task code each registration completes: cancelled in other plans, or recorded when done without a task
REGISTRATION_CODES = {
    REGISTER_STRUCTURE: "Register Structure",
    FAMILY_REGISTRATION: "RACD Register Family",
    FAMILY_MEMBER_REGISTRATION: "RACD Register Family",
}

BUSINESS_STATUS_FIELDS = ("business_status",)
DEFAULT_DONE_STATUS = "Complete"


def business_status(event: Doc) -> str | None:
    """The form's ``business_status`` observation, else ``details.taskBusinessStatus``."""
    for obs in event.get("obs") or []:
        names = (obs.get("fieldCode"), obs.get("formSubmissionField"))
        if any(n in BUSINESS_STATUS_FIELDS for n in names):
            values = [v for v in obs.get("values") or [] if v not in (None, "")]
            if values:
                return str(values[0])
    value = (event.get("details") or {}).get("taskBusinessStatus")
    return str(value) if value not in (None, "") else None


def registration_entity(event: Doc, lookup: Lookup) -> str:
    """The structure a registration is about: the event's own entity for Register_Structure; otherwise
    ``details.plan_evaluation_entity_id``, the linked task's entity, ``details.locationUUID``, or the
    registered client's residence."""
    entity = str(event.get("baseEntityId") or "")
    if event.get("eventType") == REGISTER_STRUCTURE:
        return entity
    details: Doc = event.get("details") or {}
    explicit = details.get("plan_evaluation_entity_id")
    if isinstance(explicit, str) and explicit:
        return explicit
    identifier = details.get("taskIdentifier")
    task = lookup.task(identifier) if isinstance(identifier, str) and identifier else None
    if task is not None and task.get("for"):
        return str(task["for"])
    location = details.get("locationUUID")
    if isinstance(location, str) and location:
        return location
    client = lookup.client(entity)
    return (residence(client) if client else None) or entity


def _event_plan(event: Doc, lookup: Lookup) -> str | None:
    plan = (event.get("details") or {}).get("planIdentifier")
    if isinstance(plan, str) and plan:
        return plan
    active = sorted(p["identifier"] for p in lookup.active_plans_for(event_jurisdiction(event)))
    return active[0] if active else None


def post_save(event: Doc, lookup: Lookup, now: datetime, *, owner: str = "fieldsync",
              outcome: Outcome | None = None) -> Outcome:
    """The form's post-save logic: an event with ``details.taskIdentifier`` completes that task with the
    form's business status; a registration done without a task gets a Completed task, so that it counts."""
    outcome = outcome if outcome is not None else Outcome()
    view = Overlay(lookup, outcome)
    details: Doc = event.get("details") or {}
    status = business_status(event)
    identifier = details.get("taskIdentifier")
    task = view.task(identifier) if isinstance(identifier, str) and identifier else None
    if task is not None:
        changes: Doc = {"status": T.COMPLETED}
        if status is not None:
            changes["businessStatus"] = status
        outcome.write(T.updated(task, changes, now))
        return outcome
    event_type = str(event.get("eventType") or "")
    code = REGISTRATION_CODES.get(event_type)
    plan_id = _event_plan(event, lookup)
    if code is None or plan_id is None:
        return outcome
    entity = str(event.get("baseEntityId") or "")
    if event_type == FAMILY_REGISTRATION:
        entity = registration_entity(event, lookup)
    done = T.completed_task(
        plan_id=plan_id, jurisdiction_id=event_jurisdiction(event), entity_id=entity, code=code,
        business_status=status if status and status != T.NOT_VISITED else DEFAULT_DONE_STATUS,
        event_type=event_type, now=now, owner=str(event.get("providerId") or owner),
    )
    if view.task(done["identifier"]) is None:
        outcome.write(done)
    return outcome


def cross_plan_cancel(event: Doc, lookup: Lookup, now: datetime, *, owner: str = "fieldsync",
                      paths: PathEngine | None = None, outcome: Outcome | None = None) -> Outcome:
    """A registration synced: Ready tasks for the same entity and code in other active plans are Cancelled
    ("Completed in another plan"), each recorded for the audit database, and those plans are evaluated
    again for the entity (follow-on tasks)."""
    outcome = outcome if outcome is not None else Outcome()
    code = REGISTRATION_CODES.get(str(event.get("eventType") or ""))
    if code is None:
        return outcome
    view = Overlay(lookup, outcome)
    entity = registration_entity(event, lookup)
    own_plan = (event.get("details") or {}).get("planIdentifier")
    affected: list[Doc] = []
    for task in view.tasks_for(entity):
        if task.get("code") != code or T.normalise_status(str(task.get("status") or "")) != T.READY:
            continue
        plan_id = task.get("planIdentifier")
        if not isinstance(plan_id, str) or plan_id == own_plan:
            continue
        plan = lookup.plan(plan_id)
        if plan is None or plan.get("status") != ACTIVE:
            continue
        outcome.write(T.updated(task, {
            "status": T.CANCELLED,
            "businessStatus": T.COMPLETED_IN_ANOTHER_PLAN,
            "statusReason": T.COMPLETED_IN_ANOTHER_PLAN,
        }, now))
        outcome.audit.append(T.cancellation(
            task, T.COMPLETED_IN_ANOTHER_PLAN, now, byPlan=own_plan,
            event=event.get("formSubmissionId") or event.get("_id"), eventType=event.get("eventType")))
        if all(p["identifier"] != plan_id for p in affected):
            affected.append(plan)
    for plan in affected:
        evaluate_entity(plan, entity, lookup, now, owner=owner, paths=paths, outcome=outcome)
    return outcome


def on_event(event: Doc, lookup: Lookup, now: datetime, *, owner: str = "fieldsync",
             paths: PathEngine | None = None) -> Outcome:
    """Everything the server does when an event syncs: post-save, cross-plan cancel, then every active plan
    of the event's jurisdiction evaluated for the event."""
    outcome = post_save(event, lookup, now, owner=owner)
    cross_plan_cancel(event, lookup, now, owner=owner, paths=paths, outcome=outcome)
    plans = sorted(lookup.active_plans_for(event_jurisdiction(event)), key=lambda p: str(p["identifier"]))
    for plan in plans:
        evaluate_event(plan, event, lookup, now, owner=owner, paths=paths, outcome=outcome)
    return outcome


def on_task_change(task: Doc, lookup: Lookup, now: datetime, *, owner: str = "fieldsync",
                   paths: PathEngine | None = None) -> Outcome:
    """A task changed state (the seed's task state machine): its plan is evaluated again for its entity."""
    plan_id = task.get("planIdentifier")
    plan = lookup.plan(plan_id) if isinstance(plan_id, str) else None
    if plan is None or plan.get("status") != ACTIVE or not task.get("for"):
        return Outcome()
    return evaluate_entity(plan, str(task["for"]), lookup, now, owner=owner, paths=paths)
