"""What ``fieldsync status`` shows of the workers: each worker's position and lag per database, errors, parked
documents, activations, the areas and the read model (the command line adds the interaction merges' status)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workers.areas.assignments import known_areas
from workers.couch import Couch
from workers.errors import FieldsyncError
from workers.follower import pending, read_checkpoint
from workers.plans.activation import progress_of
from workers.plans.worker import readmodel_path
from workers.readmodel.store import Store
from workers.registry import WORKERS
from workers.settings import Settings


@dataclass
class FeedStatus:
    worker: str
    db: str
    seq: Any
    pending: int
    processed: int
    writes: int
    parked: int
    last_error: str | None
    updated_at: str | None


def feeds(couch: Couch, settings: Settings) -> list[FeedStatus]:
    """Each worker's checkpoint of each database it follows (read from the audit database: no worker built)."""
    rows: list[FeedStatus] = []
    for db in sorted(couch.all_dbs()):
        kind = settings.dbs.kind(db)
        if kind is None:
            continue
        for name, spec in WORKERS.items():
            if kind not in spec.follows:
                continue
            cp = read_checkpoint(couch, settings.dbs.audit, name, db, settings.shard)
            rows.append(FeedStatus(
                worker=name, db=db, seq=cp.get("seq", 0), pending=pending(couch, db, cp.get("seq", 0)),
                processed=int(cp.get("processed", 0)), writes=int(cp.get("writes", 0)),
                parked=int(cp.get("parked", 0)), last_error=cp.get("lastError"), updated_at=cp.get("updatedAt"),
            ))
    return rows


def audit_counts(couch: Couch, settings: Settings) -> dict[str, int]:
    rows = couch.view(settings.dbs.audit, "audit", "by_kind", group_level=1)
    return {str(row["key"][0]): int(row["value"]) for row in rows}


def activations(couch: Couch, settings: Settings) -> list[dict[str, Any]]:
    out = []
    for p in progress_of(couch, settings.dbs.main):
        out.append({"plan": p.get("plan"), "state": p.get("state"), "done": p.get("jurisdictionsDone"),
                    "total": p.get("jurisdictionsTotal"), "tasks": p.get("tasks"),
                    "tasksWritten": p.get("tasksWritten"), "startedAt": p.get("startedAt"),
                    "finishedAt": p.get("finishedAt")})
    return out


def sync_from_main(settings: Settings, rows: list[FeedStatus]) -> int:
    """Changes of the main database the sync worker has yet to read and route: one figure for every area
    together (a change goes to the areas it belongs to only when it is read)."""
    return next((f.pending for f in rows if f.worker == "sync" and f.db == settings.dbs.main), 0)


def areas(couch: Couch, settings: Settings, rows: list[FeedStatus]) -> list[dict[str, Any]]:
    """Each area database: its size, who syncs it, and the sync lag: ``pendingToMain``, the changes of the area
    database the sync worker has yet to copy to the main database; ``pendingFromMain``, 0 when the sync worker
    has read every change of the main database (nothing is on its way to the area), else None: how many of the
    main database's unread changes go to this area is not known before they are read (their number, for all
    areas together, is ``syncPendingFromMain``)."""
    lag = {f.db: f.pending for f in rows if f.worker == "sync"}
    from_main = 0 if sync_from_main(settings, rows) == 0 else None
    out = []
    for area in known_areas(couch, settings):
        db = settings.dbs.area(area)
        members = couch.get_security(db).get("members") or {}
        out.append({"area": area, "db": db, "docs": int((couch.db_info(db) or {}).get("doc_count", 0)),
                    "users": members.get("names") or [], "teams": [r for r in members.get("roles") or []
                                                                   if r != "_admin"],
                    "pendingToMain": lag.get(db, 0), "pendingFromMain": from_main})
    return out


def readmodel(couch: Couch, settings: Settings) -> dict[str, Any] | None:
    """The plan worker's read model: where it is, its size, and how many changes of the main database it has
    yet to read (counted up to 10,000)."""
    found = Store.peek(readmodel_path(settings))
    if found is None:
        return None
    try:
        found["pending"] = len(couch.changes(settings.dbs.main, found["seq"], limit=10_000, include_docs=False).results)
    except FieldsyncError:
        found["pending"] = None  # a position the server refuses: the worker rebuilds the index
    return found


def collect(couch: Couch, settings: Settings) -> dict[str, Any]:
    feed_rows = feeds(couch, settings)
    return {
        "server": settings.couch_url,
        "feeds": [f.__dict__ for f in feed_rows],
        "areas": areas(couch, settings, feed_rows),
        "syncPendingFromMain": sync_from_main(settings, feed_rows),
        "activations": activations(couch, settings),
        "readModel": readmodel(couch, settings),
        "audit": audit_counts(couch, settings),
    }
