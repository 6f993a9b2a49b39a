"""Task documents as OpenSRP's TaskHelper makes and updates them, with deterministic identifiers.

A generated task's ``_id`` = ``identifier`` is a deterministic UUID of its natural key (plan, jurisdiction, action,
entity): generating it twice, on two workers or on a device and the server, gives one task. Time is always an
argument.

The identifier is an RFC 9562 version 8 UUID whose first 32 bits come from (plan, jurisdiction) alone, so that the
tasks of one jurisdiction of one plan sort next to each other (:func:`task_id`): a database's id index is a
B-tree, and an activation's request of 500 tasks then rewrites a few adjacent leaves of it instead of one leaf
per task (CouchDB 3.5.0 took the same 34,000 tasks at 2-3x the rate and half the server CPU per task).
"""

from __future__ import annotations

import copy
import hashlib
import uuid
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from validators.opensrp import Action

Doc = dict[str, Any]

NAMESPACE = uuid.UUID("6f1c2b8e-4a57-5d0e-9f3a-2c1d7e5b9a10")
_NAMESPACE_BYTES = NAMESPACE.bytes

NOT_VISITED = "Not Visited"
READY = "Ready"
COMPLETED = "Completed"
CANCELLED = "Cancelled"
ARCHIVED = "Archived"
COMPLETED_IN_ANOTHER_PLAN = "Completed in another plan"
CANCELLATION = "task-cancellation"  # the type of the record of a cancelled task

# OpenSRP's Task.TaskStatus, as its JSON spells them
_STATUS = {
    "draft": "Draft", "ready": READY, "cancelled": CANCELLED, "in progress": "In Progress",
    "in_progress": "In Progress", "in-progress": "In Progress", "completed": COMPLETED, "failed": "Failed",
    "archived": ARCHIVED,
}

# statuses that do not count when OpenSRP checks whether a task exists already
INACTIVE = {CANCELLED, ARCHIVED}


def normalise_status(value: str) -> str:
    return _STATUS.get(value.strip().lower(), value)


def task_id(plan_id: str, action_key: str, entity_id: str, jurisdiction_id: str) -> str:
    """The deterministic identifier of the task an action of a plan generates for an entity of a jurisdiction.

    An RFC 9562 UUID, version 8, from SHA-1 in ``NAMESPACE`` (any implementation, a device's included, can make
    it from this description):

    - bits 0-31: the first 4 bytes of SHA-1(NAMESPACE bytes + ``plan \\x1f jurisdiction``): shared by the tasks
      of one jurisdiction of one plan, which are thus neighbours in any index sorted by id;
    - bits 32-127: the first 12 bytes of SHA-1(NAMESPACE bytes + ``plan \\x1f action \\x1f entity``), with the
      version (8) and the variant (0b10) set over their bits, as RFC 9562 places them.

    The jurisdiction belongs to the natural key as it does to OpenSRP's own test of whether a task exists
    (same entity, plan, code and jurisdiction: :mod:`workers.evaluator.engine`)."""
    return TaskIds(plan_id, action_key)(jurisdiction_id, entity_id)


_VARIANT = {c: "89ab"[int(c, 16) & 0x3] for c in "0123456789abcdef"}
_GROUPS_HELD = 4096  # (plan, jurisdiction) prefixes a TaskIds keeps: a walk meets each jurisdiction once


class TaskIds:
    """:func:`task_id` for one (plan, action), many entities: the SHA-1 states of the common prefixes are
    computed once and copied per entity, a jurisdiction's 32 bits once per jurisdiction."""

    __slots__ = ("_base", "_groups", "_plan")

    def __init__(self, plan_id: str, action_key: str) -> None:
        self._base = hashlib.sha1(_NAMESPACE_BYTES + f"{plan_id}\x1f{action_key}\x1f".encode())
        self._plan = hashlib.sha1(_NAMESPACE_BYTES + f"{plan_id}\x1f".encode())
        self._groups: dict[str, str] = {}

    def group(self, jurisdiction_id: str) -> str:
        """The first 8 hex digits of the identifiers of the plan's tasks in ``jurisdiction_id``."""
        found = self._groups.get(jurisdiction_id)
        if found is None:
            digest = self._plan.copy()
            digest.update(jurisdiction_id.encode())
            if len(self._groups) >= _GROUPS_HELD:
                self._groups.clear()
            found = self._groups[jurisdiction_id] = digest.hexdigest()[:8]
        return found

    def __call__(self, jurisdiction_id: str, entity_id: str) -> str:
        digest = self._base.copy()
        digest.update(entity_id.encode())
        h = digest.hexdigest()
        return f"{self.group(jurisdiction_id)}-{h[:4]}-8{h[5:8]}-{_VARIANT[h[8]]}{h[9:12]}-{h[12:24]}"


def action_key(action: Action) -> str:
    """Action identifiers are not always unique within a plan (EUSM reuses one): the code disambiguates."""
    return f"{action.identifier}\x1e{action.code or ''}"


@lru_cache(maxsize=64)
def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def new_task(
    *,
    action: Action,
    plan_id: str,
    jurisdiction_id: str,
    entity_id: str,
    now: datetime,
    owner: str,
    identifier: str | None = None,
) -> Doc:
    """A Ready task of an action for an entity (before dynamic values)."""
    identifier = identifier or task_id(plan_id, action_key(action), entity_id, jurisdiction_id)
    stamp = iso(now)
    task: Doc = {
        "_id": identifier,
        "type": "Task",
        "identifier": identifier,
        "planIdentifier": plan_id,
        "groupIdentifier": jurisdiction_id,
        "status": READY,
        "businessStatus": None,
        "priority": "routine",
        "code": action.code,
        "description": action.description,
        "focus": action.identifier,
        "for": entity_id,
        "authoredOn": stamp,
        "lastModified": stamp,
        "owner": owner,
        "requester": owner,
    }
    if action.timingPeriod is not None:
        task["executionPeriod"] = {
            k: v for k, v in (("start", action.timingPeriod.start), ("end", action.timingPeriod.end)) if v
        }
    return task


class NewTasks:
    """:func:`new_task` (without dynamic values) for one action of one plan at one time, for many entities:
    the identifier hash prefix, the time stamp and the action's fields are computed once."""

    __slots__ = ("code", "description", "focus", "ids", "owner", "period", "plan_id", "stamp")

    def __init__(self, action: Action, plan_id: str, now: datetime, owner: str) -> None:
        self.ids = TaskIds(plan_id, action_key(action))
        self.plan_id = plan_id
        self.stamp = iso(now)
        self.owner = owner
        self.code = action.code
        self.description = action.description
        self.focus = action.identifier
        self.period: Doc | None = None
        if action.timingPeriod is not None:
            self.period = {
                k: v for k, v in (("start", action.timingPeriod.start), ("end", action.timingPeriod.end)) if v
            }

    def __call__(self, identifier: str, jurisdiction_id: str, entity_id: str) -> Doc:
        stamp, owner = self.stamp, self.owner
        task: Doc = {
            "_id": identifier,
            "type": "Task",
            "identifier": identifier,
            "planIdentifier": self.plan_id,
            "groupIdentifier": jurisdiction_id,
            "status": READY,
            "businessStatus": None,
            "priority": "routine",
            "code": self.code,
            "description": self.description,
            "focus": self.focus,
            "for": entity_id,
            "authoredOn": stamp,
            "lastModified": stamp,
            "owner": owner,
            "requester": owner,
        }
        if self.period is not None:
            task["executionPeriod"] = dict(self.period)
        return task


def completed_task(
    *,
    plan_id: str,
    jurisdiction_id: str,
    entity_id: str,
    code: str,
    business_status: str,
    event_type: str,
    now: datetime,
    owner: str,
) -> Doc:
    """A task recording work done without one (a structure or family member registered), status Completed."""
    identifier = task_id(plan_id, f"post-save\x1e{code}", entity_id, jurisdiction_id)
    return {
        "_id": identifier,
        "type": "Task",
        "identifier": identifier,
        "planIdentifier": plan_id,
        "groupIdentifier": jurisdiction_id,
        "status": COMPLETED,
        "businessStatus": business_status,
        "priority": "routine",
        "code": code,
        "description": f"{event_type} done without a task",
        "focus": event_type,
        "for": entity_id,
        "executionPeriod": {"start": iso(now)},
        "authoredOn": iso(now),
        "lastModified": iso(now),
        "owner": owner,
        "requester": owner,
    }


def cancellation(task: Doc, reason: Any, now: datetime, **cause: Any) -> Doc:
    """The record of a task an evaluation cancels, for the audit database (the plan worker adds the id, the
    database and the change that caused it): the task, its plan, entity and code, the reason, and what
    cancelled it (``cause``: ``byPlan``, ``byAction``, ``event``, ``location``...)."""
    return {"type": CANCELLATION, "task": task["identifier"], "taskPlan": task.get("planIdentifier"),
            "entity": task.get("for"), "code": task.get("code"), "reason": reason, **cause, "at": iso(now)}


def updated(task: Doc, changes: dict[str, Any], now: datetime) -> Doc:
    """A copy of the task with the changes and a new ``lastModified`` (the input is never mutated)."""
    out = copy.deepcopy(task)
    out.update(changes)
    out["lastModified"] = iso(now)
    out.setdefault("type", "Task")
    out.setdefault("_id", out["identifier"])
    return out


def evaluates_on_create(action: Action) -> bool:
    """Whether :func:`dynamic_changes` with ``creating=True`` evaluates an expression for this action (if
    not, its result is the same for every entity)."""
    for dynamic in action.dynamicValue:
        expression = dynamic.expression
        if expression is None or expression.expression is None or expression.name == "defaultBusinessStatus":
            continue
        if dynamic.path:
            return True
    return False


def dynamic_changes(
    action: Action,
    evaluate_string: Any,
    resource: Doc,
    today: date,
    *,
    creating: bool,
) -> dict[str, Any]:
    """Field values an action's dynamicValue entries give a task, as OpenSRP's evaluateDynamicValues.

    ``evaluate_string(expression, resource, today) -> str | None``. ``defaultBusinessStatus`` carries a
    literal; ``restriction.*`` paths set the task's restriction; any other path names a task field.
    """
    changes: dict[str, Any] = {}
    for dynamic in action.dynamicValue:
        expression = dynamic.expression
        if expression is None or expression.expression is None:
            continue
        if expression.name == "defaultBusinessStatus":
            if creating:
                changes["businessStatus"] = expression.expression
            continue
        path = dynamic.path
        if not path:
            continue
        value = evaluate_string(expression.expression, resource, today)
        if value is None:
            continue
        if path.startswith("restriction"):
            restriction = changes.setdefault("restriction", {})
            if path == "restriction.repetitions":
                restriction["repetitions"] = int(value)
            elif path in ("restriction.period.start", "restriction.period.end"):
                restriction.setdefault("period", {})[path.rsplit(".", 1)[1]] = value
            continue
        if path == "status":
            changes["status"] = normalise_status(value)
        else:
            changes[path] = value
    return changes
