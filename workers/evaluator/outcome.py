"""What an evaluation decides (an ``Outcome``: task writes, audit records) and the lookup as it will be once
those writes are applied (an ``Overlay``), so that each step of an evaluation sees the steps before it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workers.evaluator.lookup import Lookup

Doc = dict[str, Any]


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

