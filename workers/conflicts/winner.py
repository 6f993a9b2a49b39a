"""The winner of conflicting revisions (pure): latest by the document type's modification time.

Which field carries the time, per type:

| type | field (first present wins) |
| --- | --- |
| Task | ``lastModified`` |
| Client | ``dateEdited``, ``dateCreated`` |
| Event | ``dateEdited``, ``dateCreated`` |
| Feature (Location) | ``serverVersion``, ``properties.version`` (numbers, not times) |
| Plan | ``serverVersion``, ``date`` |
| anything else | ``lastModified``, ``dateEdited``, ``updatedAt``, ``dateCreated`` |

Times may be ISO 8601 strings with any offset, or epoch milliseconds; they are compared as UTC instants.

**Times written by devices are claims.** A device's clock may be wrong, or forged: an edit that claims 2099
would otherwise beat every real edit, forever. So a revision's time is its claimed time clamped to when the
server first saw that revision (``seen``: revision -> seconds since the epoch, the receipts the sync worker
writes to the audit database *before* it copies a device's revision into the main database):

    effective time = min(claimed time, first seen by the server)

A device can therefore claim an earlier time than the truth (its edit loses more easily) but never a later one
than its arrival. A revision without a receipt was written on the server itself (a worker, an admin, a load) and
its time stands as written. A revision with a receipt and no readable time takes the time of its receipt.
A revision without a readable time sorts before every revision with one. Ties are broken deterministically as
CouchDB breaks them: the longer revision history, then the greater revision id. A deleted revision competes
only when it carries a time (a device that deletes by writing ``_deleted: true`` with ``lastModified``); a bare
tombstone never wins over a living revision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Doc = dict[str, Any]

TIME_FIELDS: dict[str, tuple[str, ...]] = {
    "Task": ("lastModified",),
    "Client": ("dateEdited", "dateCreated"),
    "Event": ("dateEdited", "dateCreated"),
    "Feature": ("serverVersion", "properties.version"),
    "Plan": ("serverVersion", "date"),
}
DEFAULT_FIELDS = ("lastModified", "dateEdited", "updatedAt", "dateCreated")
# version counters, not times: a receipt cannot clamp them (a structure's edits compete by version)
NOT_TIMES = frozenset({"serverVersion", "properties.version"})


@dataclass(frozen=True)
class Candidate:
    rev: str
    time: float | None
    field: str | None
    deleted: bool
    claimed: float | None = None
    seen: float | None = None

    @property
    def sort_key(self) -> tuple[int, float, int, str]:
        generation, _, rev_id = self.rev.partition("-")
        has_time = 0 if self.time is None else 1
        return has_time, self.time or 0.0, int(generation or 0), rev_id


@dataclass(frozen=True)
class Decision:
    winner: Doc
    losers: list[Doc]
    rule: str
    times: dict[str, Any]


def _dig(doc: Doc, path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch (UTC) of an ISO string or epoch milliseconds; numbers pass as they are."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.lstrip("-").isdigit():
            return float(text)
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return None


def fields_for(doc: Doc) -> tuple[str, ...]:
    return TIME_FIELDS.get(str(doc.get("type")), DEFAULT_FIELDS)


def candidate(doc: Doc, fields: tuple[str, ...], seen: float | None = None) -> Candidate:
    """The time ``doc`` competes with: its claimed time (the first readable field), clamped to ``seen``."""
    rev, deleted = str(doc["_rev"]), bool(doc.get("_deleted"))
    for field in fields:
        claimed = parse_time(_dig(doc, field))
        if claimed is not None and field not in NOT_TIMES and abs(claimed) > 1e11:
            claimed /= 1000.0  # epoch milliseconds: the same instant as the ISO strings' seconds
        if claimed is not None:
            effective = claimed if seen is None or field in NOT_TIMES else min(claimed, seen)
            return Candidate(rev, effective, field, deleted, claimed, seen)
    return Candidate(rev, seen, None, deleted, None, seen)


def choose(leaves: list[Doc], seen: Mapping[str, float] | None = None) -> Decision:
    """Pick the latest of the leaf revisions of one document (at least two). The losers are the other
    revisions that competed: living ones, and deletions that carry a time. ``seen`` maps a revision to when
    the server first saw it (devices' revisions): claimed times are clamped to it."""
    seen = seen or {}
    if len(leaves) < 2:
        raise ValueError("a conflict needs at least two leaf revisions")
    living = [d for d in leaves if not d.get("_deleted")]
    typed = next((d for d in living if d.get("type")), living[0] if living else leaves[0])
    fields = fields_for(typed)
    candidates = {str(d["_rev"]): candidate(d, fields, seen.get(str(d["_rev"]))) for d in leaves}
    eligible = [d for d in leaves if not d.get("_deleted") or candidates[str(d["_rev"])].time is not None]
    if not eligible:
        eligible = leaves
    winner = max(eligible, key=lambda d: candidates[str(d["_rev"])].sort_key)
    # bare tombstones take no part: they are deleted already and carry nothing to restore
    losers = [d for d in eligible if d["_rev"] != winner["_rev"]]
    by_rev = {str(d["_rev"]): d for d in leaves}
    times = {rev: _explain(c, by_rev[rev]) for rev, c in sorted(candidates.items())}
    return Decision(winner, losers, f"latest-wins by {'/'.join(fields)}", times)


def _explain(c: Candidate, doc: Doc) -> dict[str, Any]:
    """What the audit record keeps of one revision's time: the field, its value, and any clamping."""
    out: dict[str, Any] = {"field": c.field, "value": _dig(doc, c.field) if c.field else None, "deleted": c.deleted}
    if c.seen is not None:
        out["seenAt"] = datetime.fromtimestamp(c.seen, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        out["clamped"] = c.claimed is None or (c.time is not None and c.time < c.claimed)
    return out
