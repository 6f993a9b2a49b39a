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

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from validators.opensrp import Action, Plan
from workers.evaluator import tasks as T
from workers.evaluator.fhir import (
    SharedParts,
    client_to_patient,
    event_to_questionnaire_response,
    location_to_fhir,
    task_to_fhir,
)
from workers.evaluator.fhirpath import PathEngine
from workers.evaluator.lookup import Lookup, is_family, is_jurisdiction, residence
from workers.evaluator.tree import Scope, jurisdictions, scope

Doc = dict[str, Any]

PLAN_ACTIVATION = "plan-activation"
EVENT_SUBMISSION = "event-submission"
PERIODIC = "periodic"

JURISDICTION = "jurisdiction"
LOCATION = "location"
FAMILY = "family"
PERSON = "person"
TASK = "task"
GLOBAL_TASK = "global.task"
JURISDICTIONAL_TASK = "jurisdictional.task"
QUESTIONNAIRE_RESPONSE = "questionnaireresponse"


def resource_type(text: str | None) -> str | None:
    return text.strip().lower() if isinstance(text, str) and text.strip() else None


# --- outcome ----------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What an evaluation decided: task documents to write (one per ``_id``, latest wins), audit records,
    the plans evaluated (plan, trigger, jurisdiction) and how many conditions were evaluated."""

    task_writes: dict[str, Doc] = field(default_factory=dict)
    audit: list[Doc] = field(default_factory=list)
    evaluated: list[tuple[str, str, str]] = field(default_factory=list)
    condition_evaluations: int = 0
    _by_entity: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @property
    def tasks(self) -> list[Doc]:
        return list(self.task_writes.values())

    def write(self, task: Doc) -> None:
        old = self.task_writes.pop(task["_id"], None)
        if old is not None and old.get("for") in self._by_entity:
            self._by_entity[old["for"]].remove(task["_id"])
        self.task_writes[task["_id"]] = task
        if task.get("for"):
            self._by_entity.setdefault(task["for"], []).append(task["_id"])

    def pending_for(self, entity_id: str) -> list[Doc]:
        """Tasks written in this outcome whose ``for`` is the entity."""
        return [self.task_writes[i] for i in self._by_entity.get(entity_id, [])]

    def merge(self, other: Outcome) -> None:
        for task in other.tasks:
            self.write(task)
        self.audit.extend(other.audit)
        self.evaluated.extend(other.evaluated)
        self.condition_evaluations += other.condition_evaluations


class Overlay:
    """The lookup as it will be once the pending task writes are applied."""

    def __init__(self, base: Lookup, outcome: Outcome) -> None:
        self.base = base
        self.outcome = outcome

    def task(self, identifier: str) -> Doc | None:
        return self.outcome.task_writes.get(identifier) or self.base.task(identifier)

    def _merge(self, found: list[Doc], keep: Any) -> list[Doc]:
        pending = self.outcome.task_writes
        out = [pending.get(t["identifier"], t) for t in found]
        known = {t["identifier"] for t in found}
        out.extend(t for i, t in pending.items() if i not in known and keep(t))
        return out

    def tasks_for(self, entity_id: str) -> list[Doc]:
        found = self.base.tasks_for(entity_id)
        pending = self.outcome.pending_for(entity_id)
        if not found:
            return pending
        writes = self.outcome.task_writes
        if not writes:
            return found
        out = [writes.get(t["identifier"], t) for t in found]
        known = {t["identifier"] for t in found}
        out.extend(t for t in pending if t["identifier"] not in known)
        return out

    def tasks_in(self, jurisdiction_id: str, plan_id: str | None) -> list[Doc]:
        return self._merge(
            self.base.tasks_in(jurisdiction_id, plan_id),
            lambda t: t.get("groupIdentifier") == jurisdiction_id
            and (plan_id is None or t.get("planIdentifier") == plan_id),
        )


@dataclass
class Subject:
    entity_id: str
    resource: Doc
    doc: Doc


@dataclass(frozen=True)
class _Condition:
    """A condition as evaluation reads it: ``reference`` lower-cased (None when absent), ``concept`` the
    subject concept's text and ``key`` its resource type."""

    expression: str
    reference: str | None
    concept: str | None
    key: str


class _ActionTable:
    """What evaluating one action of a plan reads of the models, extracted once per evaluator (the hot loops
    never touch a pydantic model)."""

    __slots__ = ("action", "conditions", "creating_changes", "is_update", "kind", "label", "new_task",
                 "on_activation", "on_periodic")

    def __init__(self, plan: Plan, action: Action, now: datetime, owner: str) -> None:
        self.action = action
        self.kind = resource_type(action.subject)
        self.label = f"{action.identifier}/{action.code}"
        self.is_update = action.is_update
        self.on_activation = any(t.name == PLAN_ACTIVATION for t in action.trigger)
        self.on_periodic = any(t.type == PERIODIC for t in action.trigger)
        conditions: list[_Condition] = []
        for condition in action.condition:
            expression = condition.expression
            if expression is None or not expression.expression:
                continue
            reference = expression.reference.strip().lower() if expression.reference else None
            concept = expression.subjectCodableConcept.text if expression.subjectCodableConcept else None
            conditions.append(_Condition(expression.expression, reference, concept or None,
                                         resource_type(concept) or ""))
        self.conditions = tuple(conditions)
        self.new_task = T.NewTasks(action, plan.identifier, now, owner)
        # a create's dynamic values, when they evaluate nothing: the same for every entity
        self.creating_changes: dict[str, Any] | None = None
        if not T.evaluates_on_create(action):
            self.creating_changes = T.dynamic_changes(action, None, {}, now.date(), creating=True)


# kinds of subjects read from the jurisdiction's scope only (the same for every action of an evaluation)
_SCOPE_KINDS = {JURISDICTION, LOCATION, FAMILY, PERSON}


class _Pass:
    """Per ``evaluate`` call: subjects by kind, families preloaded per structure, condition targets with
    their related resources contained (shared by the actions of the call)."""

    __slots__ = ("contained", "preloaded", "subjects")

    def __init__(self) -> None:
        self.subjects: dict[str, list[Subject]] = {}
        self.preloaded: dict[str, dict[str, list[Doc]] | None] = {}
        self.contained: dict[tuple[str, str], Doc] = {}


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
    ) -> None:
        self.base = lookup
        self.now = now
        self.today = now.date()
        self.owner = owner
        self.paths = paths or PathEngine()
        self.outcome = outcome if outcome is not None else Outcome()
        self.view = Overlay(lookup, self.outcome)
        self.record = record
        self._fhir_cache: dict[str, Doc] = {}
        self._shared = SharedParts()  # identifier elements the converted clients share (read only)
        self._reevaluating: set[str] = set()
        self._tables: dict[int, tuple[Plan, list[_ActionTable]]] = {}

    def _table(self, plan: Plan) -> list[_ActionTable]:
        found = self._tables.get(id(plan))
        if found is None or found[0] is not plan:
            found = (plan, [_ActionTable(plan, a, self.now, self.owner) for a in plan.action])
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

    # subjects ---------------------------------------------------------------------------------------------

    def _fhir(self, doc: Doc) -> Doc:
        """A location or client as FHIR, converted once per evaluator; events and tasks every time (they
        change during an evaluation)."""
        kind = doc.get("type")
        cache = self._fhir_cache
        if kind == "Feature":
            key = "L" + doc["id"]
            found = cache.get(key)
            if found is None:
                found = cache[key] = location_to_fhir(doc)
            return found
        if kind == "Client":
            key = "C" + doc["baseEntityId"]
            found = cache.get(key)
            if found is None:
                found = cache[key] = client_to_patient(doc, shared=self._shared)
            return found
        if kind == "Event":
            return event_to_questionnaire_response(doc)
        return task_to_fhir(doc)

    def _subject(self, doc: Doc) -> Subject:
        resource = self._fhir(doc)
        if resource["resourceType"] == "QuestionnaireResponse":
            entity = str((resource.get("subject") or {}).get("reference") or "")
        else:
            entity = str(resource["id"])
        return Subject(entity, resource, doc)

    def subjects_in(self, action: Action, plan: Plan, where: Scope) -> list[Subject]:
        kind = resource_type(action.subject)
        jid = where.jurisdiction["id"]
        docs: list[Doc]
        if kind == JURISDICTION:
            docs = [where.jurisdiction] if where.jurisdiction.get("type") == "Feature" else []
        elif kind == LOCATION:
            docs = where.structures
        elif kind == FAMILY:
            docs = where.families
        elif kind == PERSON:
            docs = [m for m in where.members if not is_family(m)]
        elif kind == TASK:
            docs = self.view.tasks_in(jid, plan.identifier)
        elif kind == JURISDICTIONAL_TASK:
            # every task of the jurisdiction: a supervisor plan follows up the tasks of other plans
            docs = self.view.tasks_in(jid, None)
        elif kind == QUESTIONNAIRE_RESPONSE:
            docs = self.base.events_in(jid)
        else:
            docs = []
        return [self._subject(d) for d in docs]

    def subjects_for_event(
        self, action: Action, plan: Plan, event: Doc, jurisdiction_id: str
    ) -> list[Subject]:
        kind = resource_type(action.subject)
        entity = str(event.get("baseEntityId") or "")
        details: Doc = event.get("details") or {}
        docs: list[Doc] = []
        if kind == JURISDICTION:
            location = self.base.location(entity)
            docs = [location] if location and is_jurisdiction(location) else []
        elif kind == LOCATION:
            client = self.base.client(entity)
            target = (residence(client) if client else None) or entity
            location = self.base.location(target)
            docs = [location] if location else []
        elif kind in (FAMILY, PERSON):
            client = self.base.client(entity)
            if client is not None and is_family(client) == (kind == FAMILY):
                docs = [client]
        elif kind == TASK:
            identifier = details.get("taskIdentifier")
            task = self.view.task(identifier) if isinstance(identifier, str) and identifier else None
            if task is not None:
                docs = [task]
            else:
                docs = [t for t in self.view.tasks_for(entity) if t.get("planIdentifier") == plan.identifier]
        elif kind == GLOBAL_TASK:
            other = details.get("plan_evaluation_entity_id")
            docs = self.view.tasks_for(other if isinstance(other, str) and other else entity)
        elif kind == JURISDICTIONAL_TASK:
            docs = self.view.tasks_in(jurisdiction_id, None)
        elif kind == QUESTIONNAIRE_RESPONSE:
            docs = [event]
        return [self._subject(d) for d in docs]

    # conditions -------------------------------------------------------------------------------------------

    def condition_subjects(self, concept: str | None, subject: Subject, plan: Plan) -> list[Doc]:
        """ActionHelper.getConditionSubjectResources for an entity target."""
        kind = resource_type(concept)
        doc = subject.doc
        doc_kind = doc.get("type")
        found: list[Doc] = []
        if kind == FAMILY:
            if doc_kind == "Feature":
                found = self.base.families_at(doc["id"])
            elif doc_kind == "Client":
                found = [f for f in (self.base.client(i) for i in
                                     (doc.get("relationships") or {}).get("family", [])) if f]
        elif kind == PERSON:
            if doc_kind == "Feature":
                found = [m for f in self.base.families_at(doc["id"])
                         for m in self.base.members_of(f["baseEntityId"])]
            elif doc_kind == "Client":
                found = self.base.members_of(doc["baseEntityId"])
        elif kind == LOCATION:
            if doc_kind == "Client":
                home = residence(doc)
                location = self.base.location(home) if home else None
                found = [location] if location else []
            elif doc_kind == "Feature":
                found = [doc]
        elif kind == JURISDICTION:
            parent = (doc.get("properties") or {}).get("parentId") if doc_kind == "Feature" else None
            location = self.base.location(parent) if isinstance(parent, str) else None
            found = [location] if location else []
        elif kind == TASK:
            found = [t for t in self.view.tasks_for(subject.entity_id)
                     if t.get("planIdentifier") == plan.identifier]
        elif kind == GLOBAL_TASK:
            found = self.view.tasks_for(subject.entity_id)
        elif kind == QUESTIONNAIRE_RESPONSE:
            found = self.base.events_for(subject.entity_id)
        return [self._fhir(d) for d in found]

    def conditions_hold(self, table: _ActionTable, subject: Subject, target: Doc, plan: Plan, trigger: str,
                        where: Scope | None, state: _Pass) -> bool:
        """The action's conditions, AND-ed (OpenSRP's ConditionHelper), each decision recorded if asked."""
        record = self.record
        for condition in table.conditions:
            if condition.reference is not None and condition.reference != trigger:
                continue
            evaluated = target
            if condition.concept and target.get("resourceType") != "QuestionnaireResponse":
                evaluated = self._with_related(condition, subject, target, plan, where, state)
            self.outcome.condition_evaluations += 1
            holds = self.paths.boolean(condition.expression, evaluated, self.today)
            if record is not None:
                record.append((subject.entity_id, table.label, holds))
            if not holds:
                return False
        return True

    def _with_related(self, condition: _Condition, subject: Subject, target: Doc, plan: Plan,
                      where: Scope | None, state: _Pass) -> Doc:
        """The target with the condition's related resources in ``contained`` (the target itself if none).
        Preloaded relations (the scope's families at a structure) are built once per subject and kind."""
        key = condition.key
        preloaded = self._preload(subject, where, state)
        if preloaded is not None and key in preloaded:
            cache_key = (subject.entity_id, key)
            found = state.contained.get(cache_key)
            if found is not None and found.get("id") == target.get("id"):
                return found
            related = preloaded[key]
            if not related:
                return target
            evaluated = dict(target)
            evaluated["contained"] = related
            state.contained[cache_key] = evaluated
            return evaluated
        related = self.condition_subjects(condition.concept, subject, plan)
        if not related:
            return target
        evaluated = dict(target)
        evaluated["contained"] = related
        return evaluated

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

    def create(self, table: _ActionTable, plan: Plan, jurisdiction_id: str, subject: Subject) -> None:
        entity = subject.entity_id
        identifier = table.new_task.ids(entity)
        action = table.action
        if self._exists(action, plan, jurisdiction_id, entity, identifier):
            return
        task = table.new_task(identifier, jurisdiction_id, entity)
        if table.creating_changes is not None:
            task.update(table.creating_changes)
        else:
            task.update(T.dynamic_changes(action, self.paths.string, subject.resource, self.today, creating=True))
        if task.get("businessStatus") is None:
            task["businessStatus"] = T.NOT_VISITED
        self.outcome.write(task)

    def update(self, action: Action, plan: Plan, subject: Subject, target: Doc, qr: Doc | None,
               event: Doc | None, jurisdiction_id: str) -> None:
        task = self.view.task(subject.entity_id)
        if task is None:
            return
        changes = T.dynamic_changes(action, self.paths.string, target, self.today, creating=False)
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
        if (resource_type(action.subject) == GLOBAL_TASK and isinstance(other, str)
                and other != plan.identifier and other not in self._reevaluating):
            other_doc = self.base.plan(other)
            if other_doc is not None:
                self._reevaluating.add(other)
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
        state = _Pass()
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
                subjects = self.subjects_for_event(action, plan, event, jurisdiction_id)
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
                if not self.conditions_hold(table, subject, target, plan, trigger, where, state):
                    continue
                if table.is_update:
                    self.update(action, plan, subject, target, qr, event, jurisdiction_id)
                else:
                    self.create(table, plan, jurisdiction_id, subject)

    def _scope_subjects(self, table: _ActionTable, plan: Plan, here: Scope, state: _Pass) -> list[Subject]:
        """An action's subjects in a scope; those read from the scope only are built once per pass."""
        kind = table.kind
        if kind is None or kind not in _SCOPE_KINDS:
            return self.subjects_in(table.action, plan, here)
        found = state.subjects.get(kind)
        if found is None:
            found = self.subjects_in(table.action, plan, here)
            state.subjects[kind] = found
        return found

    def _preload(self, subject: Subject, where: Scope | None, state: _Pass) -> dict[str, list[Doc]] | None:
        """Families at a structure come from the jurisdiction's prefetched scope during activation."""
        if where is None or subject.doc.get("type") != "Feature":
            return None
        entity = subject.entity_id
        if entity in state.preloaded:
            return state.preloaded[entity]
        families = where.families_at.get(entity)
        found = None if families is None else {FAMILY: [self._fhir(f) for f in families]}
        state.preloaded[entity] = found
        return found


# --- public API -------------------------------------------------------------------------------------------


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
) -> Iterator[Batch]:
    """Evaluate a plan's ``plan-activation`` actions jurisdiction by jurisdiction (the plan's jurisdictions,
    then their descendants, in a fixed order), yielding the tasks to write in batches of ``batch_size``.

    ``resume_after``: the last jurisdiction whose final batch was written; the walk restarts after it.
    Generation is deterministic (ids from plan, action and entity), so replaying a jurisdiction is harmless.
    """
    model = _plan(plan)
    engine = paths or PathEngine()
    skipping = resume_after is not None
    for jurisdiction in jurisdictions(model.jurisdiction_codes, lookup):
        jid = str(jurisdiction["id"])
        if skipping:
            if jid == resume_after:
                skipping = False
            continue
        begin = getattr(lookup, "begin_jurisdiction", None)
        if begin is not None:  # a lookup that prefetches what one jurisdiction's evaluation reads
            begin(jid)
        where = scope(jurisdiction, lookup)
        evaluator = Evaluator(lookup, now, owner=owner, paths=engine, record=record)
        evaluator.evaluate(model, PLAN_ACTIVATION, jid, where=where)
        found = evaluator.outcome.tasks
        entities = 1 + len(where.structures) + len(where.families) + len(where.members)
        evaluations = evaluator.outcome.condition_evaluations
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
