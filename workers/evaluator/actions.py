"""A plan's actions as the evaluator reads them: trigger names, and per action a table of what its evaluation
needs (its subject kind, triggers, conditions, how to build its tasks), extracted once per evaluator so that
the hot loops never touch a pydantic model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from validators.opensrp import Action, Plan
from workers.evaluator import tasks as T
from workers.evaluator.subjects import SubjectKind

PLAN_ACTIVATION = "plan-activation"
EVENT_SUBMISSION = "event-submission"
PERIODIC = "periodic"


@dataclass(frozen=True)
class Condition:
    """A condition as evaluation reads it: ``reference`` lower-cased (None when absent), ``concept`` the
    subject concept's text and ``kind`` the kind it names."""

    expression: str
    reference: str | None
    concept: str | None
    kind: SubjectKind | None


class ActionTable:
    """What evaluating one action of a plan reads of the models."""

    __slots__ = ("action", "conditions", "creating_changes", "is_update", "kind", "label", "new_task",
                 "on_activation", "on_periodic")

    def __init__(self, plan: Plan, action: Action, now: datetime, owner: str) -> None:
        self.action = action
        self.kind = SubjectKind.of(action.subject)
        self.label = f"{action.identifier}/{action.code}"
        self.is_update = action.is_update
        self.on_activation = any(t.name == PLAN_ACTIVATION for t in action.trigger)
        self.on_periodic = any(t.type == PERIODIC for t in action.trigger)
        conditions: list[Condition] = []
        for condition in action.condition:
            expression = condition.expression
            if expression is None or not expression.expression:
                continue
            reference = expression.reference.strip().lower() if expression.reference else None
            concept = expression.subjectCodableConcept.text if expression.subjectCodableConcept else None
            conditions.append(Condition(expression.expression, reference, concept or None, SubjectKind.of(concept)))
        self.conditions = tuple(conditions)
        self.new_task = T.NewTasks(action, plan.identifier, now, owner)
        # a create's dynamic values, when they evaluate nothing: the same for every entity
        self.creating_changes: dict[str, Any] | None = None
        if not T.evaluates_on_create(action):
            self.creating_changes = T.dynamic_changes(action, None, {}, now.date(), creating=True)
