"""Which operational areas a document belongs to, and what a device may write into an area: pure functions.

An operational area is a jurisdiction that structures hang under (a structure's ``properties.parentId``). A
document belongs to:

- a structure: its parent jurisdiction;
- a family or member (Client): the area of the structure it lives at (``attributes.residence``; for a member
  without one, its family's);
- an event: its ``locationId`` (OpenSRP's jurisdiction of the event; a structure id there means that
  structure's area), else the area of its ``baseEntityId``;
- a task: its ``groupIdentifier`` (the jurisdiction the plan generated it for), else the area of its ``for``;
  a task or event of a jurisdiction itself (``for``/``baseEntityId`` a jurisdiction, e.g. a BCC task) goes to
  the known areas at or under that jurisdiction and never creates one;
- a jurisdiction: every known area whose chain of parents contains it (and itself, when it is an area);
- a plan: every known area that one of its ``jurisdiction[].code`` covers (the area or one of its parents);
- ``settings``: every known area (devices read the map styles; they cannot write it).

Anything else (the ``assignments`` document, audit records...) belongs to no area and never leaves the main
database. "Known" areas are the ones that have a database already: jurisdictions, plans and settings do not
create one; a structure, a client, an event or a task does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

Doc = dict[str, Any]

SETTINGS_ID = "settings"
ASSIGNMENTS_ID = "assignments"
MAX_DEPTH = 32

# What a device may change on a task it syncs: its state, and who did it when. Everything else is the plan's.
TASK_DEVICE_FIELDS = frozenset({"_rev", "_revisions", "status", "businessStatus", "lastModified", "owner", "note"})
TASK_STATUSES = frozenset({"Draft", "Ready", "Cancelled", "In Progress", "Completed", "Failed", "Archived"})


@dataclass(frozen=True)
class Place:
    """What routing needs of a location: its parent and whether it is a jurisdiction."""

    id: str
    parent: str | None
    jurisdiction: bool


@dataclass(frozen=True)
class Resident:
    """What routing needs of a client: where it lives and the families it belongs to."""

    id: str
    residence: str | None
    families: tuple[str, ...]


class Index(Protocol):
    def place(self, location_id: str) -> Place | None: ...

    def resident(self, client_id: str) -> Resident | None: ...


def place_of(doc: Doc) -> Place | None:
    if doc.get("type") != "Feature" or not doc.get("_id"):
        return None
    parent = (doc.get("properties") or {}).get("parentId")
    return Place(str(doc["_id"]), parent if isinstance(parent, str) and parent else None,
                 doc.get("jurisdiction") is True)


def resident_of(doc: Doc) -> Resident | None:
    if doc.get("type") != "Client" or not doc.get("_id"):
        return None
    home = (doc.get("attributes") or {}).get("residence")
    families = tuple(f for f in (doc.get("relationships") or {}).get("family", []) if isinstance(f, str))
    return Resident(str(doc["_id"]), home if isinstance(home, str) and home else None, families)


def references(doc: Doc) -> set[str]:
    """The ids routing ``doc`` may read through the index (to fetch them in one request per batch)."""
    kind = doc.get("type")
    refs: set[str] = set()
    if kind == "Feature":
        parent = (doc.get("properties") or {}).get("parentId")
        if isinstance(parent, str):
            refs.add(parent)
    elif kind == "Client":
        resident = resident_of(doc)
        if resident:
            refs.update(x for x in (resident.residence, *resident.families) if x)
    elif kind == "Event":
        refs.update(str(x) for x in (doc.get("locationId"), doc.get("baseEntityId")) if x)
    elif kind == "Task":
        refs.update(str(x) for x in (doc.get("groupIdentifier"), doc.get("for")) if x)
    return refs


def chain(area: str, index: Index) -> list[str]:
    """The area and its parent jurisdictions, nearest first (cycles and runaway depth cut)."""
    out: list[str] = []
    current: str | None = area
    while current and current not in out and len(out) < MAX_DEPTH:
        out.append(current)
        place = index.place(current)
        current = place.parent if place else None
    return out


def _area_of_location(location_id: str, index: Index) -> str | None:
    place = index.place(location_id)
    if place is None:
        return None
    if place.jurisdiction:
        return place.id
    return place.parent


# the field naming a document's jurisdiction, and the field naming its entity
_PLACE_AND_ENTITY = {"Event": ("locationId", "baseEntityId"), "Task": ("groupIdentifier", "for")}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _area_of_resident(resident: Resident, index: Index, depth: int = 0) -> str | None:
    """Where a client lives: its residence's area, else (a member) its family's."""
    if resident.residence:
        found = _area_of_location(resident.residence, index)
        if found:
            return found
    for family in resident.families:
        if family != resident.id and depth < 3:
            found = _area_of_entity(family, index, depth + 1)
            if found:
                return found
    return None


def _area_of_entity(entity_id: str, index: Index, depth: int = 0) -> str | None:
    """The area of a structure, a family or a member id."""
    if index.place(entity_id) is not None:
        return _area_of_location(entity_id, index)
    resident = index.resident(entity_id)
    return _area_of_resident(resident, index, depth) if resident is not None else None


def home_area(doc: Doc, index: Index) -> str | None:
    """The one area an entity, event or task lives in (None for jurisdictions, plans, and the unknown)."""
    kind = doc.get("type")
    if kind == "Feature":
        return None if doc.get("jurisdiction") is True else _parent(doc)
    if kind == "Client":
        resident = resident_of(doc)
        return _area_of_resident(resident, index) if resident is not None else None
    fields = _PLACE_AND_ENTITY.get(str(kind))
    if fields is None:
        return None
    place, entity = _text(doc.get(fields[0])), _text(doc.get(fields[1]))
    found = _area_of_location(place, index) if place else None
    return found or (_area_of_entity(entity, index) if entity else None)


def _parent(doc: Doc) -> str | None:
    parent = (doc.get("properties") or {}).get("parentId")
    return parent if isinstance(parent, str) and parent else None


def plan_jurisdictions(plan: Doc) -> set[str]:
    return {str(j.get("code")) for j in plan.get("jurisdiction") or [] if isinstance(j, dict) and j.get("code")}


def plan_covers(plan: Doc, area_chain: Iterable[str]) -> bool:
    return bool(plan_jurisdictions(plan) & set(area_chain))


def areas_of(doc: Doc, index: Index, known: dict[str, list[str]]) -> set[str]:
    """Every area ``doc`` goes to. ``known`` maps each area that has a database to its chain (area first)."""
    doc_id = str(doc.get("_id", ""))
    if doc_id == SETTINGS_ID:
        return set(known)
    kind = doc.get("type")
    if kind == "Plan":
        codes = plan_jurisdictions(doc)
        return {area for area, parents in known.items() if codes & set(parents)}
    if kind == "Feature" and doc.get("jurisdiction") is True:
        return {area for area, parents in known.items() if doc_id in parents}
    home = home_area(doc, index)
    if home is None:
        return set()
    if kind in ("Task", "Event") and _at_jurisdiction(doc, index):
        # a jurisdiction's own task or event (a BCC task, a case event): the known areas at or under it
        return {area for area, parents in known.items() if home in parents}
    return {home}


def _at_jurisdiction(doc: Doc, index: Index) -> bool:
    """A task or event attached to a jurisdiction itself rather than to a structure, family or member."""
    target = _text(doc.get(_PLACE_AND_ENTITY[str(doc.get("type"))][1]))
    if target is None:
        return False
    place = index.place(target)
    return place is not None and place.jurisdiction


@dataclass(frozen=True)
class OnServer:
    """What the main database holds under the id a device wrote: its current winning body (None when the id
    is new), whether that id was deleted there, and the revision the device's edit descends from (when main
    has it: a task's protected fields are compared with what the device started from)."""

    body: Doc | None = None
    deleted: bool = False
    parent: Doc | None = None


NEW = OnServer()
RESERVED_IDS = frozenset({SETTINGS_ID, ASSIGNMENTS_ID})
DEVICE_CREATES = ("Feature", "Event", "Client")  # structures, events, clients: never tasks, plans, jurisdictions


def parent_rev(doc: Doc) -> str | None:
    """The revision ``doc`` was edited from, read from its ``_revisions`` (None for a first revision)."""
    history = doc.get("_revisions") or {}
    ids, start = history.get("ids") or [], history.get("start")
    if not isinstance(start, int) or len(ids) < 2:
        return None
    return f"{start - 1}-{ids[1]}"


def device_write_refusal(
    doc: Doc, area: str, index: Index, known: dict[str, list[str]], server: OnServer = NEW,
) -> str | None:
    """Why a revision a device wrote into ``area``'s database may not reach the main database, or None.

    The rule (the area's ``validate_doc_update`` applies what it can see of it; this applies all of it, against
    the main database): a device may create only new ids of its own area's structures, clients and events, and
    may change only documents that the main database routes to that same area, keeping their type (a task: its
    status fields only). Deletions, reserved ids, plans, jurisdictions and ``settings`` never pass.
    """
    doc_id = str(doc.get("_id", ""))
    kind = doc.get("type")
    if not doc_id or doc_id.startswith("_") or doc_id in RESERVED_IDS:
        return f"{doc_id or '?'}: _id: a reserved id, written on the server only"
    if doc.get("_deleted"):
        return f"{doc_id}: _deleted: devices do not delete documents of an operational area"
    if kind == "Plan" or doc.get("jurisdiction") is True:
        return f"{doc_id}: type: plans and jurisdictions are written on the server only"
    if server.deleted:
        return f"{doc_id}: _id: this id was deleted on the server; a device cannot bring it back"
    existing = server.body
    if existing is None:
        if kind not in DEVICE_CREATES:
            return f"{doc_id}: type: a device creates structures, clients and events only, not {kind}"
    else:
        if existing.get("type") != kind:
            return f"{doc_id}: type: a document keeps its type ({existing.get('type')}), not {kind}"
        if existing.get("type") == "Plan" or existing.get("jurisdiction") is True:
            return f"{doc_id}: type: plans and jurisdictions are written on the server only"
        owners = areas_of(existing, index, known)
        if area not in owners:
            where = ", ".join(sorted(owners)) or "no operational area"
            return f"{doc_id}: _id: belongs to {where} on the server, not to operational area {area}"
        if kind == "Task":
            refusal = task_edit_refusal(doc, server.parent or existing)
            if refusal:
                return refusal
    targets = areas_of(doc, index, known)
    if area not in targets:
        home = home_area(doc, index)
        if home is not None and home != area:
            return f"{kind} {doc_id} belongs to operational area {home}, not {area}"
        return f"{kind} {doc_id}: cannot tell that it belongs to operational area {area}"
    return None


def task_edit_refusal(doc: Doc, before: Doc) -> str | None:
    """A device's edit of a task: only its status fields change, with values a task may hold."""
    doc_id = str(doc.get("_id"))
    for field in sorted(set(doc) | set(before)):
        if field in TASK_DEVICE_FIELDS or field in ("_id", "_conflicts", "_deleted_conflicts"):
            continue
        if doc.get(field) != before.get(field):
            return f"{doc_id}: {field}: a device may change a task's status, businessStatus, lastModified, owner " \
                   "and note only"
    if doc.get("status") not in TASK_STATUSES:
        return f"{doc_id}: status: not a task status (one of {', '.join(sorted(TASK_STATUSES))})"
    for field in ("businessStatus", "owner", "lastModified"):
        if field in doc and not (isinstance(doc[field], str) and 0 < len(doc[field]) <= 200):
            return f"{doc_id}: {field}: a text of 1-200 characters"
    note = doc.get("note")
    if note is not None and not _valid_note(note):
        return f"{doc_id}: note: a list of annotations {{authorString, time, text}}"
    return None


def _valid_note(note: object) -> bool:
    if not isinstance(note, list) or len(note) > 100:
        return False
    allowed = {"authorString", "time", "text"}
    for item in note:
        if not isinstance(item, dict) or not set(item) <= allowed:
            return False
        if not all(isinstance(v, str) and len(v) <= 2000 for v in item.values()):
            return False
    return True
