"""The activation walk: a plan's jurisdictions and their descendants -> structures -> families -> members."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from workers.evaluator.lookup import Lookup, is_family, is_jurisdiction

Doc = dict[str, Any]


def jurisdictions(codes: list[str], lookup: Lookup) -> Iterator[Doc]:
    """The jurisdictions named by a plan, then their descendant jurisdictions, breadth first, each once,
    children in id order (a deterministic order, so that a checkpoint can name the last one done).
    A code with no location document still yields a bare jurisdiction (OpenSRP evaluates the code)."""
    seen: set[str] = set()
    queue: list[Doc] = []
    for code in codes:
        doc = lookup.location(code) or {"type": "Feature", "id": code, "jurisdiction": True, "properties": {}}
        queue.append(doc)
    while queue:
        current = queue.pop(0)
        if current["id"] in seen:
            continue
        seen.add(current["id"])
        yield current
        children = [c for c in lookup.child_locations(current["id"]) if is_jurisdiction(c)]
        queue.extend(sorted(children, key=lambda c: str(c["id"])))


@dataclass
class Scope:
    """Everything one jurisdiction's evaluation reads, fetched in a few batch calls."""

    jurisdiction: Doc
    structures: list[Doc] = field(default_factory=list)
    families_at: dict[str, list[Doc]] = field(default_factory=dict)
    members_of: dict[str, list[Doc]] = field(default_factory=dict)

    @property
    def families(self) -> list[Doc]:
        return [f for found in self.families_at.values() for f in found]

    @property
    def members(self) -> list[Doc]:
        return [m for found in self.members_of.values() for m in found]


def scope(jurisdiction: Doc, lookup: Lookup) -> Scope:
    structures = sorted(
        (c for c in lookup.child_locations(jurisdiction["id"]) if not is_jurisdiction(c)),
        key=lambda c: str(c["id"]),
    )
    families_at = lookup.families_at_many([s["id"] for s in structures]) if structures else {}
    families_at = {k: [f for f in v if is_family(f)] for k, v in families_at.items()}
    family_ids = [f["baseEntityId"] for fs in families_at.values() for f in fs]
    members_of = lookup.members_of_many(family_ids) if family_ids else {}
    return Scope(jurisdiction, structures, families_at, members_of)
