"""Plan evaluation with OpenSRP's semantics (PlanEvaluator, TriggerHelper, ActionHelper, ConditionHelper,
TaskHelper), as pure functions: documents and a ``Lookup`` in, an ``Outcome`` (task writes, audit records)
out.

Triggers: ``plan-activation``; ``event-submission`` (its expression evaluated on the event as a
QuestionnaireResponse); ``periodic`` (daily ``timeOfDay``). An action's conditions are AND-ed; a condition
whose ``expression.reference`` names another trigger is skipped; a condition's ``subjectCodableConcept``
loads the related entities into ``contained``. The evaluation target is the entity (activation, periodic) or
the QuestionnaireResponse with the entity contained (submission). Create actions make Ready tasks unless one
exists (same entity, plan, code and jurisdiction, not Cancelled/Archived); update actions apply their
dynamicValues to the subject task; a Global.Task update of another plan's task has that plan evaluated again.

Deviations from OpenSRP, on purpose: a ``Person`` subject is never a family client (OpenSRP would give a
family a blood screening task on Family_Registration); on submission, conditions with a subject concept keep
the entity in ``contained`` instead of replacing it with the entity's events; a task whose deterministic id
exists already is never rewritten by a create action.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from validators.opensrp import Action, Plan
from workers.evaluator import tasks as T
from workers.evaluator.actions import EVENT_SUBMISSION, PERIODIC, PLAN_ACTIVATION, ActionTable
from workers.evaluator.conditions import Conditions, Pass
from workers.evaluator.fhir import event_to_questionnaire_response
from workers.evaluator.fhirpath import PathEngine
from workers.evaluator.gcpause import cycle_collection_paused
from workers.evaluator.lookup import Lookup, is_family, is_jurisdiction, residence
from workers.evaluator.outcome import Outcome, Overlay
from workers.evaluator.subjects import SCOPE_KINDS, Subject, SubjectKind, Subjects, omissible
from workers.evaluator.tree import Scope, jurisdictions, scope

Doc = dict[str, Any]

# the trigger names are the evaluator's vocabulary: callers name them from here
__all__ = [
    "EVENT_SUBMISSION", "PERIODIC", "PLAN_ACTIVATION", "Batch", "Evaluator", "activate", "activation_batches",
    "evaluate_entity", "evaluate_event", "event_jurisdiction", "periodic", "periodic_due",
]


# --- the evaluator ----------------------------------------------------------------------------------------


class Evaluator:
    """One unit of work (an activation batch, an event): a lookup, the time, the task owner."""

    def __init__(
        self,
        lookup: Lookup,
        now: datetime,
        *,
        owner: str = "fieldsync",
        paths: PathEngine | None = None,
        outcome: Outcome | None = None,
        record: list[tuple[str, str, bool]] | None = None,
        without: frozenset[str] = frozenset(),
    ) -> None:
        """``without``: Patient elements the clients are converted without, for one plan's evaluation whose
        expressions never name them (:func:`~workers.evaluator.subjects.omissible`)."""
        self.base = lookup
        self.now = now
        self.today = now.date()
        self.owner = owner
        self.paths = paths or PathEngine()
        self.outcome = outcome if outcome is not None else Outcome()
        self.view = Overlay(lookup, self.outcome)
        self.record = record
        self.subjects = Subjects(lookup, self.view, without=without)
        self.conditions = Conditions(self.paths, self.subjects, self.outcome, self.today, record)
        self._reevaluating: set[str] = set()
        self._tables: dict[int, tuple[Plan, list[ActionTable]]] = {}

    def _table(self, plan: Plan) -> list[ActionTable]:
        found = self._tables.get(id(plan))
        if found is None or found[0] is not plan:
            found = (plan, [ActionTable(plan, a, self.now, self.owner) for a in plan.action])
            self._tables[id(plan)] = found
        return found[1]

    # triggers ---------------------------------------------------------------------------------------------

    def triggered(self, action: Action, trigger: str, qr: Doc | None) -> bool:
        for t in action.trigger:
            if trigger == PLAN_ACTIVATION and t.name == PLAN_ACTIVATION:
                return True
            if trigger == PERIODIC and t.type == PERIODIC:
                return True
            if (trigger == EVENT_SUBMISSION and t.name == EVENT_SUBMISSION and qr is not None
                    and t.expression is not None and t.expression.expression):
                self.outcome.condition_evaluations += 1
                if self.paths.boolean(t.expression.expression, qr, self.today):
                    return True
        return False

    # tasks ------------------------------------------------------------------------------------------------

    def _exists(
        self, action: Action, plan: Plan, jurisdiction_id: str, entity_id: str, identifier: str
    ) -> bool:
        writes = self.outcome.task_writes
        if writes.get(identifier) or self.base.task(identifier) is not None:
            return True
        plan_id, code = plan.identifier, action.code
        for task in self.view.tasks_for(entity_id):
            if (task.get("planIdentifier") == plan_id and task.get("code") == code
                    and task.get("groupIdentifier") == jurisdiction_id
                    and T.normalise_status(str(task.get("status") or "")) not in T.INACTIVE):
                return True
        return False

    def _string(self, expression: str, resource: Doc, today: date) -> str | None:
        """A dynamic value's text, fhirpathpy given the whole resources (see ``without``)."""
        return self.paths.string(expression, resource, today, self.subjects.complete)

    def create(self, table: ActionTable, plan: Plan, jurisdiction_id: str, subject: Subject) -> None:
        entity = subject.entity_id
        identifier = table.new_task.ids(jurisdiction_id, entity)
        action = table.action
        if self._exists(action, plan, jurisdiction_id, entity, identifier):
            return
        task = table.new_task(identifier, jurisdiction_id, entity)
        if table.creating_changes is not None:
            task.update(table.creating_changes)
        else:
            task.update(T.dynamic_changes(action, self._string, subject.resource, self.today, creating=True))
        if task.get("businessStatus") is None:
            task["businessStatus"] = T.NOT_VISITED
        self.outcome.write(task)

    def update(self, table: ActionTable, plan: Plan, subject: Subject, target: Doc, event: Doc | None,
               jurisdiction_id: str) -> None:
        action = table.action
        task = self.view.task(subject.entity_id)
        if task is None:
            return
        changes = T.dynamic_changes(action, self._string, target, self.today, creating=False)
        if not changes:
            return
        new = T.updated(task, changes, self.now)
        if new.get("status") == T.CANCELLED and changes.get("businessStatus"):
            new.setdefault("statusReason", changes["businessStatus"])
        self.outcome.write(new)
        if new.get("status") == T.CANCELLED and task.get("status") != T.CANCELLED:
            self.outcome.audit.append(T.cancellation(
                new, new.get("businessStatus"), self.now, byPlan=plan.identifier, byAction=action.identifier,
                event=(event or {}).get("formSubmissionId") or (event or {}).get("_id")))
        other = task.get("planIdentifier")
        if (table.kind == SubjectKind.GLOBAL_TASK and isinstance(other, str)
                and other != plan.identifier and other not in self._reevaluating):
            other_doc = self.base.plan(other)
            if other_doc is not None:
                self._reevaluating.add(other)
                self.subjects.whole()  # the other plan's expressions may read what this one's did not
                self.evaluate(Plan.model_validate(other_doc), PLAN_ACTIVATION, jurisdiction_id, event=event)

    # plans ------------------------------------------------------------------------------------------------

    def evaluate(
        self,
        plan: Plan,
        trigger: str,
        jurisdiction_id: str,
        *,
        event: Doc | None = None,
        where: Scope | None = None,
    ) -> None:
        """OpenSRP's evaluatePlan(plan, trigger, jurisdiction, questionnaireResponse)."""
        self.outcome.evaluated.append((plan.identifier, trigger, jurisdiction_id))
        qr = event_to_questionnaire_response(event) if event is not None else None
        state = Pass()
        here: Scope | None = where
        for table in self._table(plan):
            action = table.action
            if trigger == PLAN_ACTIVATION:
                if not table.on_activation:
                    continue
            elif trigger == PERIODIC:
                if not table.on_periodic:
                    continue
            elif not self.triggered(action, trigger, qr):
                continue
            if event is not None:
                subjects = self.subjects.for_event(table.kind, plan.identifier, event, jurisdiction_id)
            else:
                if here is None:
                    here = scope(self.base.location(jurisdiction_id)
                                 or {"id": jurisdiction_id, "properties": {}}, self.base)
                subjects = self._scope_subjects(table, plan, here, state)
            for subject in subjects:
                if qr is not None:
                    target = dict(qr)
                    target["contained"] = [subject.resource]
                else:
                    target = subject.resource
                if not self.conditions.hold(table, subject, target, plan.identifier, trigger, where, state):
                    continue
                if table.is_update:
                    self.update(table, plan, subject, target, event, jurisdiction_id)
                else:
                    self.create(table, plan, jurisdiction_id, subject)

    def _scope_subjects(self, table: ActionTable, plan: Plan, here: Scope, state: Pass) -> list[Subject]:
        """An action's subjects in a scope; those read from the scope only are built once per pass."""
        kind = table.kind
        if kind is None or kind not in SCOPE_KINDS:
            return self.subjects.in_scope(kind, plan.identifier, here)
        found = state.subjects.get(kind)
        if found is None:
            found = self.subjects.in_scope(kind, plan.identifier, here)
            state.subjects[kind] = found
        return found


# --- public API -------------------------------------------------------------------------------------------


# subjects that are tasks of any plan: an activation of a plan with actions on them reads other plans' tasks
OTHER_PLANS_TASKS = frozenset({SubjectKind.JURISDICTIONAL_TASK, SubjectKind.GLOBAL_TASK})


def _plan(plan: Plan | Doc) -> Plan:
    return plan if isinstance(plan, Plan) else Plan.model_validate(plan)


def event_jurisdiction(event: Doc) -> str:
    """The jurisdiction of an event: its ``locationId`` (OpenSRP reads the QuestionnaireResponse item)."""
    return str(event.get("locationId") or "")


@dataclass
class Batch:
    """Tasks of one jurisdiction of an activation; ``last`` marks the jurisdiction's final batch (then the
    jurisdiction can be checkpointed as done)."""

    jurisdiction_id: str
    tasks: list[Doc]
    last: bool
    condition_evaluations: int = 0
    entities: int = 0


def activation_batches(
    plan: Plan | Doc,
    lookup: Lookup,
    now: datetime,
    *,
    batch_size: int = 500,
    resume_after: str | None = None,
    owner: str = "fieldsync",
    paths: PathEngine | None = None,
    record: list[tuple[str, str, bool]] | None = None,
    mine: Callable[[str], bool] | None = None,
) -> Iterator[Batch]:
    """Evaluate a plan's ``plan-activation`` actions jurisdiction by jurisdiction (the plan's jurisdictions,
    then their descendants, in a fixed order), yielding the tasks to write in batches of ``batch_size``.

    ``resume_after``: the last jurisdiction whose final batch was written; the walk restarts after it.
    Generation is deterministic (ids from plan, action and entity), so replaying a jurisdiction is harmless.
    ``mine``: a worker's share (``FIELDSYNC_WORKER_SHARD``): a jurisdiction it is false for is passed with an
    empty last batch, not evaluated (another worker evaluates it).
    """
    model = _plan(plan)
    engine = paths or PathEngine()
    # the clients are converted without the Patient elements none of the plan's expressions names, where the
    # fast path evaluates (fhirpathpy alone would be given every resource whole again, each time)
    without = omissible(text for _, _, text in model.expressions()) if engine.mode == "fast" else frozenset()
    # the tasks of other plans are read ahead only for a plan with actions on them (a supervisor plan's)
    own_tasks = None if any(SubjectKind.of(a.subject) in OTHER_PLANS_TASKS for a in model.action) else model.identifier
    skipping = resume_after is not None
    for jurisdiction in jurisdictions(model.jurisdiction_codes, lookup):
        jid = str(jurisdiction["id"])
        if skipping:
            if jid == resume_after:
                skipping = False
            continue
        if mine is not None and not mine(jid):
            yield Batch(jid, [], True, 0, 0)
            continue
        lookup.begin_jurisdiction(jid, own_tasks)  # a lookup may read ahead what this jurisdiction's evaluation reads
        with cycle_collection_paused():  # the jurisdiction's objects all live until its end (see gcpause)
            where = scope(jurisdiction, lookup)
            evaluator = Evaluator(lookup, now, owner=owner, paths=engine, record=record, without=without)
            evaluator.evaluate(model, PLAN_ACTIVATION, jid, where=where)
            found = evaluator.outcome.tasks
            entities = 1 + len(where.structures) + len(where.families) + len(where.members)
            evaluations = evaluator.outcome.condition_evaluations
            # freed before the collector resumes, which then traverses the tasks alone, not the whole scope
            del evaluator, where
        if not found:
            yield Batch(jid, [], True, evaluations, entities)
            continue
        for start in range(0, len(found), batch_size):
            chunk = found[start : start + batch_size]
            first = start == 0
            yield Batch(jid, chunk, start + batch_size >= len(found),
                        evaluations if first else 0, entities if first else 0)


def activate(plan: Plan | Doc, lookup: Lookup, now: datetime, *, owner: str = "fieldsync",
             paths: PathEngine | None = None) -> Outcome:
    """The whole activation as one Outcome (small plans, tests)."""
    outcome = Outcome()
    for batch in activation_batches(plan, lookup, now, owner=owner, paths=paths):
        for task in batch.tasks:
            outcome.write(task)
        outcome.condition_evaluations += batch.condition_evaluations
    return outcome


def evaluate_event(plan: Plan | Doc, event: Doc, lookup: Lookup, now: datetime, *, owner: str = "fieldsync",
                   paths: PathEngine | None = None, outcome: Outcome | None = None) -> Outcome:
    """OpenSRP's evaluatePlan(plan, questionnaireResponse): a plan's event-submission actions for an event."""
    evaluator = Evaluator(lookup, now, owner=owner, paths=paths, outcome=outcome)
    evaluator.evaluate(_plan(plan), EVENT_SUBMISSION, event_jurisdiction(event), event=event)
    return evaluator.outcome


def evaluate_entity(plan: Plan | Doc, entity_id: str, lookup: Lookup, now: datetime, *,
                    trigger: str = PLAN_ACTIVATION, owner: str = "fieldsync", paths: PathEngine | None = None,
                    outcome: Outcome | None = None) -> Outcome:
    """Evaluate a plan's actions for one entity (a structure, family, member or jurisdiction) as activation
    would, e.g. after a task of that entity changed state. The jurisdiction is the structure's parent."""
    evaluator = Evaluator(lookup, now, owner=owner, paths=paths, outcome=outcome)
    model = _plan(plan)
    location = lookup.location(entity_id)
    client = lookup.client(entity_id) if location is None else None
    structure = location
    if client is not None:
        home = residence(client)
        structure = lookup.location(home) if home else None
    if structure is None:
        return evaluator.outcome
    if is_jurisdiction(structure):
        where = Scope(structure)
        jid = str(structure["id"])
    else:
        jid = str((structure.get("properties") or {}).get("parentId") or "")
        parent = lookup.location(jid) or {"id": jid, "properties": {}}
        families = [f for f in lookup.families_at(structure["id"]) if is_family(f)]
        members = {f["baseEntityId"]: lookup.members_of(f["baseEntityId"]) for f in families}
        where = Scope(parent, [structure], {structure["id"]: families}, members)
        where = _narrow(where, entity_id, client)
    evaluator.evaluate(model, trigger, jid, where=where)
    return evaluator.outcome


def _narrow(where: Scope, entity_id: str, client: Doc | None) -> Scope:
    """Keep only the entity itself in a one-structure scope (so its neighbours are not re-evaluated)."""
    if client is None:
        return Scope(where.jurisdiction, where.structures, where.families_at, {})
    if is_family(client):
        families = [f for fs in where.families_at.values() for f in fs if f["baseEntityId"] == entity_id]
        return Scope(where.jurisdiction, [], {s["id"]: families for s in where.structures}, {})
    mine = set((client.get("relationships") or {}).get("family") or [])
    families = [f for fs in where.families_at.values() for f in fs if f["baseEntityId"] in mine]
    return Scope(where.jurisdiction, [], {s["id"]: families for s in where.structures},
                 {f["baseEntityId"]: [client] for f in families})


def periodic(plan: Plan | Doc, lookup: Lookup, now: datetime, *, window: timedelta = timedelta(minutes=15),
             owner: str = "fieldsync", paths: PathEngine | None = None) -> Outcome:
    """Run a plan's ``periodic`` actions if one of their daily times of day is due at ``now`` (within
    ``window`` after it, from the first ``timingTiming.event`` date on), over the plan's jurisdictions."""
    model = _plan(plan)
    due = any(periodic_due(t, now, window) for a in model.action for t in a.trigger if t.type == PERIODIC)
    evaluator = Evaluator(lookup, now, owner=owner, paths=paths)
    if not due:
        return evaluator.outcome
    for jurisdiction in jurisdictions(model.jurisdiction_codes, lookup):
        evaluator.evaluate(model, PERIODIC, str(jurisdiction["id"]), where=scope(jurisdiction, lookup))
    return evaluator.outcome


def periodic_due(trigger: Any, now: datetime, window: timedelta) -> bool:
    timing = getattr(trigger, "timingTiming", None)
    if timing is None or timing.repeat is None:
        return False
    if timing.event:
        try:
            if now.date() < datetime.fromisoformat(timing.event[0][:10]).date():
                return False
        except ValueError:
            return False
    unit = (timing.repeat.periodUnit or "d").lower()
    if unit != "d":
        return False
    current = datetime.combine(now.date(), now.time().replace(tzinfo=None))
    for text in timing.repeat.timeOfDay:
        try:
            at = time.fromisoformat(text)
        except ValueError:
            continue
        start = datetime.combine(now.date(), at)
        if start <= current < start + window:
            return True
    return False
