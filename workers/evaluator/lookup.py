"""How the evaluator reads related documents: a Protocol, and an in-memory implementation.

The evaluator never does I/O: it asks a ``Lookup``. The CouchDB-backed plan worker implements the same
protocol with views and bulk reads; the ``*_many`` methods exist so that it can answer a whole batch of
entities with one request. Documents are plain dicts in their stored (OpenSRP) shapes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Protocol

Doc = dict[str, Any]

ACTIVE = "active"


def is_jurisdiction(location: Doc) -> bool:
    """A jurisdiction carries ``"jurisdiction": true``; a structure does not."""
    return location.get("jurisdiction") is True


def is_family(client: Doc) -> bool:
    """Reveal registers a family as a Client with last name "Family" (its members point at it)."""
    relationships = client.get("relationships") or {}
    return client.get("lastName") == "Family" or "family_head" in relationships


def parent_id(location: Doc) -> str | None:
    parent = (location.get("properties") or {}).get("parentId")
    return parent if isinstance(parent, str) and parent else None


def residence(client: Doc) -> str | None:
    value = (client.get("attributes") or {}).get("residence")
    return value if isinstance(value, str) and value else None


def families_of(client: Doc) -> list[str]:
    return [f for f in (client.get("relationships") or {}).get("family", []) if isinstance(f, str)]


class Lookup(Protocol):
    """Reads the evaluator needs. Every method is a pure read; ``None``/``[]`` when nothing matches."""

    def location(self, location_id: str) -> Doc | None: ...

    def child_locations(self, parent_id: str) -> list[Doc]:
        """Jurisdictions and structures whose ``properties.parentId`` is ``parent_id``."""
        ...

    def client(self, client_id: str) -> Doc | None: ...

    def families_at(self, structure_id: str) -> list[Doc]:
        """Family clients whose ``attributes.residence`` is the structure."""
        ...

    def families_at_many(self, structure_ids: list[str]) -> dict[str, list[Doc]]: ...

    def members_of(self, family_id: str) -> list[Doc]:
        """Clients whose ``relationships.family`` names the family."""
        ...

    def members_of_many(self, family_ids: list[str]) -> dict[str, list[Doc]]: ...

    def task(self, identifier: str) -> Doc | None: ...

    def tasks_for(self, entity_id: str) -> list[Doc]:
        """Every task whose ``for`` is the entity, whatever its plan or status."""
        ...

    def tasks_for_many(self, entity_ids: list[str]) -> dict[str, list[Doc]]: ...

    def tasks_in(self, jurisdiction_id: str, plan_id: str | None) -> list[Doc]:
        """Tasks whose ``groupIdentifier`` is the jurisdiction, of one plan (or of any when ``None``)."""
        ...

    def plan(self, identifier: str) -> Doc | None: ...

    def active_plans_for(self, jurisdiction_id: str) -> list[Doc]:
        """Active plans whose jurisdictions include this one or one of its ancestors."""
        ...

    def events_for(self, entity_id: str) -> list[Doc]:
        """Events whose ``baseEntityId`` is the entity."""
        ...

    def events_in(self, jurisdiction_id: str) -> list[Doc]:
        """Events whose ``locationId`` is the jurisdiction."""
        ...

    def begin_jurisdiction(self, jurisdiction_id: str, plan_id: str | None = None) -> None:
        """An activation is about to evaluate this jurisdiction: a lookup may read ahead what that reads (its
        tasks, at once; of plan ``plan_id`` only, when given: the plan reads no other plan's tasks) and answer
        from it; the others do nothing."""
        ...


class InMemoryLookup:
    """A ``Lookup`` over a list of documents (tests, the benchmark, small tools). Indexes built once;
    ``put`` adds or replaces a document (tasks are replaced by ``identifier``)."""

    def __init__(self, docs: Iterable[Doc] = ()) -> None:
        self._locations: dict[str, Doc] = {}
        self._children: dict[str, list[str]] = defaultdict(list)
        self._clients: dict[str, Doc] = {}
        self._families_at: dict[str, list[str]] = defaultdict(list)
        self._members: dict[str, list[str]] = defaultdict(list)
        self._tasks: dict[str, Doc] = {}
        self._tasks_for: dict[str, list[str]] = defaultdict(list)
        self._plans: dict[str, Doc] = {}
        self._events: list[Doc] = []
        for doc in docs:
            self.put(doc)

    def begin_jurisdiction(self, jurisdiction_id: str, plan_id: str | None = None) -> None:
        return None  # everything is in memory already

    def put(self, doc: Doc) -> None:
        kind = doc.get("type")
        if kind == "Feature":
            self._put_location(doc)
        elif kind == "Client":
            self._put_client(doc)
        elif kind == "Task":
            self._put_task(doc)
        elif kind == "Event":
            self._events.append(doc)
        elif kind == "Plan" or (kind is None and "action" in doc and "identifier" in doc):
            self._plans[doc["identifier"]] = doc
        elif kind is None and "identifier" in doc and "planIdentifier" in doc:
            self._put_task(doc)
        else:
            raise ValueError(f"InMemoryLookup cannot index a document of type {kind!r}")

    def _put_location(self, doc: Doc) -> None:
        old = self._locations.get(doc["id"])
        if old is not None and parent_id(old):
            self._children[parent_id(old) or ""].remove(doc["id"])
        self._locations[doc["id"]] = doc
        parent = parent_id(doc)
        if parent:
            self._children[parent].append(doc["id"])

    def _put_client(self, doc: Doc) -> None:
        cid = doc["baseEntityId"]
        old = self._clients.get(cid)
        if old is not None:
            for family in families_of(old):
                self._members[family].remove(cid)
            if is_family(old) and residence(old):
                self._families_at[residence(old) or ""].remove(cid)
        self._clients[cid] = doc
        if is_family(doc):
            home = residence(doc)
            if home:
                self._families_at[home].append(cid)
        for family in families_of(doc):
            if family != cid:
                self._members[family].append(cid)

    def _put_task(self, doc: Doc) -> None:
        tid = doc["identifier"]
        old = self._tasks.get(tid)
        if old is not None and old.get("for"):
            self._tasks_for[old["for"]].remove(tid)
        self._tasks[tid] = doc
        if doc.get("for"):
            self._tasks_for[doc["for"]].append(tid)

    # --- Lookup ---------------------------------------------------------------------------------------

    def location(self, location_id: str) -> Doc | None:
        return self._locations.get(location_id)

    def child_locations(self, parent_id: str) -> list[Doc]:
        return [self._locations[c] for c in self._children.get(parent_id, [])]

    def client(self, client_id: str) -> Doc | None:
        return self._clients.get(client_id)

    def families_at(self, structure_id: str) -> list[Doc]:
        return [self._clients[c] for c in self._families_at.get(structure_id, [])]

    def families_at_many(self, structure_ids: list[str]) -> dict[str, list[Doc]]:
        return {s: self.families_at(s) for s in structure_ids}

    def members_of(self, family_id: str) -> list[Doc]:
        return [self._clients[c] for c in self._members.get(family_id, [])]

    def members_of_many(self, family_ids: list[str]) -> dict[str, list[Doc]]:
        return {f: self.members_of(f) for f in family_ids}

    def task(self, identifier: str) -> Doc | None:
        return self._tasks.get(identifier)

    def tasks_for(self, entity_id: str) -> list[Doc]:
        return [self._tasks[t] for t in self._tasks_for.get(entity_id, [])]

    def tasks_for_many(self, entity_ids: list[str]) -> dict[str, list[Doc]]:
        return {e: self.tasks_for(e) for e in entity_ids}

    def tasks_in(self, jurisdiction_id: str, plan_id: str | None) -> list[Doc]:
        return [t for t in self._tasks.values()
                if t.get("groupIdentifier") == jurisdiction_id
                and (plan_id is None or t.get("planIdentifier") == plan_id)]

    def plan(self, identifier: str) -> Doc | None:
        return self._plans.get(identifier)

    def active_plans_for(self, jurisdiction_id: str) -> list[Doc]:
        chain: set[str] = set()
        current: str | None = jurisdiction_id
        while current and current not in chain:
            chain.add(current)
            location = self._locations.get(current)
            current = parent_id(location) if location else None
        return [p for p in self._plans.values()
                if p.get("status") == ACTIVE
                and any(j.get("code") in chain for j in p.get("jurisdiction") or [])]

    def events_for(self, entity_id: str) -> list[Doc]:
        return [e for e in self._events if e.get("baseEntityId") == entity_id]

    def events_in(self, jurisdiction_id: str) -> list[Doc]:
        return [e for e in self._events if e.get("locationId") == jurisdiction_id]
