"""The evaluator's :class:`~workers.evaluator.lookup.Lookup` over the main database.

Every read goes through one view, ``_design/lookup/_view/entities`` (tagged keys, see its map function):
PouchDB Server builds one index per view, so one view means one index to build and keep up to date. Reads
by entity use ``keys`` (one request for a whole batch of entities); documents by id use ``_all_docs``.

Reads are cached for the lifetime of one instance (one unit of work), and the writes of that unit are put
into the cache with :meth:`remember`, so that a follow-on evaluation sees the tasks it has just made.
"""

from __future__ import annotations

from typing import Any

from workers.couch import Couch, Doc
from workers.evaluator.lookup import ACTIVE, parent_id

DDOC, VIEW = "lookup", "entities"


class CouchLookup:
    def __init__(self, couch: Couch, db: str) -> None:
        self.couch = couch
        self.db = db
        self._docs: dict[str, Doc | None] = {}
        self._written: dict[str, Doc] = {}
        self._any_active: bool | None = None
        self._active_for: dict[str, list[Doc]] = {}
        # read the index as it is, without waiting for it to catch up (see ActivationLookup)
        self.stale = False

    # ------------------------------------------------------------------ helpers

    def begin_jurisdiction(self, jurisdiction_id: str) -> None:
        return None  # every read is a query of its own (ActivationLookup reads a jurisdiction's tasks ahead)

    def _get(self, doc_id: str, doc_type: str) -> Doc | None:
        if doc_id in self._written:
            doc: Doc | None = self._written[doc_id]
        else:
            if doc_id not in self._docs:
                self._docs[doc_id] = self.couch.get(self.db, doc_id)
            doc = self._docs[doc_id]
        return doc if doc is not None and doc.get("type") == doc_type else None

    def _params(self) -> dict[str, Any]:
        return {"include_docs": True, **({"stale": "update_after"} if self.stale else {})}

    def _by_key(self, tag: str, values: list[str]) -> dict[str, list[Doc]]:
        """Documents under ``[tag, value]`` for each value, in one request per 500 values."""
        out: dict[str, list[Doc]] = {v: [] for v in values}
        unique = list(dict.fromkeys(values))
        for start in range(0, len(unique), 500):
            keys = [[tag, v] for v in unique[start : start + 500]]
            for row in self.couch.view(self.db, DDOC, VIEW, keys=keys, **self._params()):
                doc: Doc | None = row.get("doc")
                if doc:
                    out.setdefault(row["key"][1], []).append(self._written.get(doc["_id"]) or doc)
        return out

    def _range(self, *prefix: Any) -> list[Doc]:
        rows = self.couch.view(self.db, DDOC, VIEW, startkey=list(prefix), endkey=[*prefix, {}], **self._params())
        docs: list[Doc] = [r["doc"] for r in rows if r.get("doc")]
        return [self._written.get(d["_id"]) or d for d in docs]

    def remember(self, docs: list[Doc]) -> None:
        """Documents this unit of work wrote: later reads see them."""
        for doc in docs:
            self._written[doc["_id"]] = doc

    def _with_written_tasks(self, entity: str, found: list[Doc]) -> list[Doc]:
        ids = {d["_id"] for d in found}
        extra = [d for d in self._written.values()
                 if d.get("type") == "Task" and d.get("for") == entity and d["_id"] not in ids]
        return found + extra

    # ------------------------------------------------------------------ Lookup

    def location(self, location_id: str) -> Doc | None:
        return self._get(location_id, "Feature")

    def child_locations(self, parent: str) -> list[Doc]:
        return self._by_key("child", [parent])[parent]

    def client(self, client_id: str) -> Doc | None:
        return self._get(client_id, "Client")

    def families_at(self, structure_id: str) -> list[Doc]:
        return self.families_at_many([structure_id])[structure_id]

    def families_at_many(self, structure_ids: list[str]) -> dict[str, list[Doc]]:
        return self._by_key("residence", list(structure_ids))

    def members_of(self, family_id: str) -> list[Doc]:
        return self.members_of_many([family_id])[family_id]

    def members_of_many(self, family_ids: list[str]) -> dict[str, list[Doc]]:
        return self._by_key("member", list(family_ids))

    def task(self, identifier: str) -> Doc | None:
        return self._get(identifier, "Task")

    def tasks_for(self, entity_id: str) -> list[Doc]:
        return self.tasks_for_many([entity_id])[entity_id]

    def tasks_for_many(self, entity_ids: list[str]) -> dict[str, list[Doc]]:
        found = self._by_key("task-for", list(entity_ids))
        return {e: self._with_written_tasks(e, found.get(e, [])) for e in entity_ids}

    def tasks_in(self, jurisdiction_id: str, plan_id: str | None = None) -> list[Doc]:
        prefix = (jurisdiction_id,) if plan_id is None else (jurisdiction_id, plan_id)
        found = self._range("task-group", *prefix)
        ids = {d["_id"] for d in found}
        extra = [d for d in self._written.values() if d.get("type") == "Task" and d["_id"] not in ids
                 and d.get("groupIdentifier") == jurisdiction_id
                 and (plan_id is None or d.get("planIdentifier") == plan_id)]
        return found + extra

    def plan(self, identifier: str) -> Doc | None:
        return self._get(identifier, "Plan")

    def ancestors(self, jurisdiction_id: str) -> list[str]:
        chain: list[str] = []
        current: str | None = jurisdiction_id
        while current and current not in chain:
            chain.append(current)
            location = self._get(current, "Feature")
            current = parent_id(location) if location else None
        return chain

    def active_plans(self) -> list[Doc]:
        plans = {d["_id"]: d for d in self._range("plan", ACTIVE)}
        return sorted(plans.values(), key=lambda p: str(p.get("identifier")))

    def any_active_plan(self) -> bool:
        if self._any_active is None:
            self._any_active = bool(self.couch.view(self.db, DDOC, VIEW, startkey=["plan", ACTIVE],
                                                    endkey=["plan", ACTIVE, {}], limit=1))
        return self._any_active

    def active_plans_for(self, jurisdiction_id: str) -> list[Doc]:
        if not self.any_active_plan():
            return []
        if jurisdiction_id not in self._active_for:
            chain = self.ancestors(jurisdiction_id)
            found = self._by_key_plan(chain)
            self._active_for[jurisdiction_id] = sorted(found.values(), key=lambda p: str(p.get("identifier")))
        return self._active_for[jurisdiction_id]

    def _by_key_plan(self, codes: list[str]) -> dict[str, Doc]:
        rows = self.couch.view(self.db, DDOC, VIEW, keys=[["plan", ACTIVE, c] for c in codes], **self._params())
        return {r["doc"]["_id"]: r["doc"] for r in rows if r.get("doc")}

    def events_for(self, entity_id: str) -> list[Doc]:
        return self._by_key("event-entity", [entity_id])[entity_id]

    def events_in(self, jurisdiction_id: str) -> list[Doc]:
        return self._by_key("event-location", [jurisdiction_id])[jurisdiction_id]


class ActivationLookup(CouchLookup):
    """The lookup of an activation: before each jurisdiction is evaluated (``begin_jurisdiction``), every task
    of that jurisdiction is read with one range query, and task reads are answered from it. A task that is
    not there is taken as absent: activation only creates tasks of the jurisdiction it evaluates, under ids
    derived from (plan, action, entity) that devices compute too, so writing one that exists answers 409 and
    nothing is duplicated.

    Each jurisdiction begins with a fresh read (the index catches up with everything written so far); the
    rest of its reads take the index as it is (``stale``), since the activation itself writes only tasks. An
    entity written after its jurisdiction began is evaluated by the worker's feed rule (see ``covers``)."""

    def __init__(self, couch: Couch, db: str) -> None:
        super().__init__(couch, db)
        self._group_tasks: dict[str, Doc] | None = None
        self._group_for: dict[str, list[Doc]] = {}

    def begin_jurisdiction(self, jurisdiction_id: str) -> None:
        # fresh: the index catches up with everything written until now, so what this jurisdiction's
        # evaluation reads (stale from here on) misses nothing written before it began
        self._group_tasks = None
        self.stale = False
        found = self.tasks_in(jurisdiction_id)
        self._group_tasks = {d["_id"]: d for d in found}
        self._group_for = {}
        for doc in found:
            self._group_for.setdefault(str(doc.get("for")), []).append(doc)
        self._docs.clear()  # memory stays flat: one jurisdiction at a time
        self.stale = True

    def task(self, identifier: str) -> Doc | None:
        if self._group_tasks is None:
            return super().task(identifier)
        return self._group_tasks.get(identifier)

    def tasks_for(self, entity_id: str) -> list[Doc]:
        if self._group_tasks is None:
            return super().tasks_for(entity_id)
        return list(self._group_for.get(entity_id, []))

    def tasks_for_many(self, entity_ids: list[str]) -> dict[str, list[Doc]]:
        if self._group_tasks is None:
            return super().tasks_for_many(entity_ids)
        return {e: list(self._group_for.get(e, [])) for e in entity_ids}
