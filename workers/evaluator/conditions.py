"""An action's conditions for one subject (OpenSRP's ConditionHelper): AND-ed, a condition naming another
trigger skipped, a condition with a subject concept evaluated on its target with the related resources in
``contained``. Each evaluation is counted, and recorded when asked (the benchmark compares decisions)."""

from __future__ import annotations

from datetime import date
from typing import Any

from workers.evaluator.actions import ActionTable, Condition
from workers.evaluator.fhirpath import PathEngine
from workers.evaluator.outcome import Outcome
from workers.evaluator.subjects import Subject, SubjectKind, Subjects
from workers.evaluator.tree import Scope

Doc = dict[str, Any]


class Pass:
    """Per ``evaluate`` call: subjects by kind, families preloaded per structure, condition targets with
    their related resources contained (shared by the actions of the call)."""

    __slots__ = ("contained", "preloaded", "subjects")

    def __init__(self) -> None:
        self.subjects: dict[SubjectKind, list[Subject]] = {}
        self.preloaded: dict[str, dict[SubjectKind, list[Doc]] | None] = {}
        self.contained: dict[tuple[str, SubjectKind | None], Doc] = {}


class Conditions:
    def __init__(self, paths: PathEngine, subjects: Subjects, outcome: Outcome, today: date,
                 record: list[tuple[str, str, bool]] | None) -> None:
        self.paths = paths
        self.subjects = subjects
        self.outcome = outcome
        self.today = today
        self.record = record

    def hold(self, table: ActionTable, subject: Subject, target: Doc, plan_id: str, trigger: str,
             where: Scope | None, state: Pass) -> bool:
        """The action's conditions, AND-ed, each decision recorded if asked."""
        record = self.record
        for condition in table.conditions:
            if condition.reference is not None and condition.reference != trigger:
                continue
            evaluated = target
            if condition.concept and target.get("resourceType") != "QuestionnaireResponse":
                evaluated = self._with_related(condition, subject, target, plan_id, where, state)
            self.outcome.condition_evaluations += 1
            holds = self.paths.boolean(condition.expression, evaluated, self.today, self.subjects.complete)
            if record is not None:
                record.append((subject.entity_id, table.label, holds))
            if not holds:
                return False
        return True

    def _with_related(self, condition: Condition, subject: Subject, target: Doc, plan_id: str,
                      where: Scope | None, state: Pass) -> Doc:
        """The target with the condition's related resources in ``contained`` (the target itself if none).
        Preloaded relations (the scope's families at a structure) are built once per subject and kind."""
        kind = condition.kind
        preloaded = self._preload(subject, where, state)
        if preloaded is not None and kind in preloaded:
            cache_key = (subject.entity_id, kind)
            found = state.contained.get(cache_key)
            if found is not None and found.get("id") == target.get("id"):
                return found
            related = preloaded[kind]
            if not related:
                return target
            evaluated = dict(target)
            evaluated["contained"] = related
            state.contained[cache_key] = evaluated
            return evaluated
        related = self.subjects.related(kind, subject, plan_id)
        if not related:
            return target
        evaluated = dict(target)
        evaluated["contained"] = related
        return evaluated

    def _preload(self, subject: Subject, where: Scope | None, state: Pass) -> dict[SubjectKind, list[Doc]] | None:
        """Families at a structure come from the jurisdiction's prefetched scope during activation."""
        if where is None or subject.doc.get("type") != "Feature":
            return None
        entity = subject.entity_id
        if entity in state.preloaded:
            return state.preloaded[entity]
        families = where.families_at.get(entity)
        found = None if families is None else {SubjectKind.FAMILY: [self.subjects.fhir(f) for f in families]}
        state.preloaded[entity] = found
        return found
