"""The evaluator's :class:`~workers.evaluator.lookup.Lookup` over the read model: every read is a local SQLite
query, none is a view query; what the worker writes is put in the index at once (:meth:`remember`).

Why an index that trails the server decides as the server would: the plan worker reads the index only once it
holds the main database's feed up to the batch being processed, read by :meth:`ReadModel.catch_up` to its end
or handed over page after page by the worker's follower (:meth:`ReadModel.follow`), so it trails the server by
at most what was written during that one batch, exactly as the views it replaces did (a view answers with what
was indexed when it was queried). An activation's jurisdiction reads the index as the follower has brought it:
an entity written after the follower's last page is evaluated by the feed rule when its change comes, since
the activation will not cover a jurisdiction it has begun (``Activation.covers``), and one the follower has
brought is in the index before its batch is processed. And what it could miss is harmless for the same reasons
as before: tasks are created under deterministic ids (a task the index missed answers 409 on creation: it
exists, nothing is duplicated); updates carry the revision they were computed from (a stale one answers 409,
and the change is retried after a fresh catch-up, then parked); an entity written after its jurisdiction's
activation began is evaluated by the feed rule when its own change comes.
"""

from __future__ import annotations

from workers.evaluator.lookup import ACTIVE, parent_id
from workers.evaluator.outcome import Outcome
from workers.readmodel.feed import ReadModel
from workers.readmodel.store import Doc, Store


class IndexLookup:
    def __init__(self, model: ReadModel, *, fresh_per_jurisdiction: bool = False) -> None:
        self.model = model
        self.fresh_per_jurisdiction = fresh_per_jurisdiction
        # an activation's jurisdiction: its tasks read once (one query), task reads answered from them
        self._group: dict[str, Doc] | None = None
        self._group_for: dict[str, list[Doc]] = {}
        # an activation's jurisdiction: its children, read once for its scope and again by the walk, which looks
        # for the jurisdictions among them when it resumes after the jurisdiction's evaluation (both read the
        # index as it was when the jurisdiction began: what the follower brings meanwhile is the feed rule's)
        self._children: tuple[str, list[Doc]] | None = None

    @property
    def _store(self) -> Store:
        return self.model.store  # opened (or rebuilt) lazily by the model

    def remember(self, docs: list[Doc]) -> None:
        self.model.remember(docs)
        if self._group is not None:
            for doc in docs:
                if doc.get("type") == "Task" and doc["_id"] in self._group:
                    self._group[doc["_id"]] = doc

    def begin_jurisdiction(self, jurisdiction_id: str, plan_id: str | None = None) -> None:
        """An activation begins a jurisdiction: the index catches up with everything written until now, and the
        jurisdiction's tasks are read at once (of plan ``plan_id`` only, when given: a second plan over an area
        would otherwise decode the first one's tasks too, a fifth of the evaluating thread's time in the
        benchmark's second activation). A task that is not among them is taken as absent: an activation
        creates only tasks of the jurisdiction it evaluates, under ids derived from (plan, action, entity,
        jurisdiction), so creating one that exists after all answers 409 and nothing is duplicated."""
        if self.fresh_per_jurisdiction:
            self.model.refresh()
            self._group = None
            self._children = None
            found = self.tasks_in(jurisdiction_id, plan_id)
            self._group = {d["_id"]: d for d in found}
            self._group_for = {}
            for doc in found:
                self._group_for.setdefault(str(doc.get("for")), []).append(doc)

    # ------------------------------------------------------------------ Lookup

    def location(self, location_id: str) -> Doc | None:
        return self._store.get(location_id, "Feature")

    def child_locations(self, parent: str) -> list[Doc]:
        if self._children is not None and self._children[0] == parent:
            return list(self._children[1])
        found = self._store.by_key("child", [parent])[parent]
        if self._group is not None:  # within an activation's jurisdiction
            self._children = (parent, found)
        return list(found)

    def client(self, client_id: str) -> Doc | None:
        return self._store.get(client_id, "Client")

    def families_at(self, structure_id: str) -> list[Doc]:
        return self.families_at_many([structure_id])[structure_id]

    def families_at_many(self, structure_ids: list[str]) -> dict[str, list[Doc]]:
        return self._store.by_key("residence", structure_ids)

    def members_of(self, family_id: str) -> list[Doc]:
        return self.members_of_many([family_id])[family_id]

    def members_of_many(self, family_ids: list[str]) -> dict[str, list[Doc]]:
        return self._store.by_key("member", family_ids)

    def task(self, identifier: str) -> Doc | None:
        if self._group is not None:
            return self._group.get(identifier)
        return self._store.get(identifier, "Task")

    def tasks_for(self, entity_id: str) -> list[Doc]:
        return self.tasks_for_many([entity_id])[entity_id]

    def tasks_for_many(self, entity_ids: list[str]) -> dict[str, list[Doc]]:
        if self._group is not None:
            return {e: list(self._group_for.get(e, [])) for e in entity_ids}
        return self._store.by_key("task-for", entity_ids)

    def tasks_in(self, jurisdiction_id: str, plan_id: str | None = None) -> list[Doc]:
        return self._store.by_key("task-group", [jurisdiction_id], plan_id)[jurisdiction_id]

    def plan(self, identifier: str) -> Doc | None:
        return self._store.get(identifier, "Plan")

    def ancestors(self, jurisdiction_id: str) -> list[str]:
        chain: list[str] = []
        current: str | None = jurisdiction_id
        while current and current not in chain and len(chain) < 64:
            chain.append(current)
            location = self.location(current)
            current = parent_id(location) if location else None
        return chain

    def active_plans(self) -> list[Doc]:
        found: list[Doc] = self._store.by_key("plan", [ACTIVE])[ACTIVE]
        plans = {d["_id"]: d for d in found}
        return sorted(plans.values(), key=lambda p: str(p.get("identifier")))

    def any_active_plan(self) -> bool:
        return bool(self._store.any_under("plan", ACTIVE))

    def active_plans_for(self, jurisdiction_id: str) -> list[Doc]:
        chain = set(self.ancestors(jurisdiction_id))
        plans = [p for p in self.active_plans()
                 if any(isinstance(j, dict) and j.get("code") in chain for j in p.get("jurisdiction") or [])]
        return plans

    def events_for(self, entity_id: str) -> list[Doc]:
        return self._store.by_key("event-entity", [entity_id])[entity_id]

    def events_in(self, jurisdiction_id: str) -> list[Doc]:
        return self._store.by_key("event-location", [jurisdiction_id])[jurisdiction_id]


class PendingLookup(IndexLookup):
    """The read model as it will be once ``pending`` (the task writes decided for the changes before, in the
    same feed batch, not written yet) is applied: the plan worker evaluates each change of a batch over it and
    writes the whole batch's tasks in one request. A task read from ``pending`` carries the revision it was
    decided from, not the one it will have: the worker writes what is pending before an outcome that writes one
    of those tasks again, and evaluates that change again over what was written."""

    def __init__(self, model: ReadModel, pending: Outcome) -> None:
        super().__init__(model)
        self.pending = pending

    def task(self, identifier: str) -> Doc | None:
        return self.pending.task_writes.get(identifier) or super().task(identifier)

    def tasks_for_many(self, entity_ids: list[str]) -> dict[str, list[Doc]]:
        found = super().tasks_for_many(entity_ids)
        return {e: _with_pending(found.get(e, []), self.pending.pending_for(e)) for e in entity_ids}

    def tasks_in(self, jurisdiction_id: str, plan_id: str | None = None) -> list[Doc]:
        pending = [t for t in self.pending.tasks if t.get("groupIdentifier") == jurisdiction_id
                   and (plan_id is None or t.get("planIdentifier") == plan_id)]
        return _with_pending(super().tasks_in(jurisdiction_id, plan_id), pending)


def _with_pending(found: list[Doc], pending: list[Doc]) -> list[Doc]:
    """``found`` with each task ``pending`` writes replaced by the pending body, and the new ones added."""
    if not pending:
        return found
    by_id = {t["_id"]: t for t in pending}
    out = [by_id.pop(t["_id"], t) for t in found]
    return out + list(by_id.values())
