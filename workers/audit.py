"""The audit database: what the workers decided and what they could not do, with deterministic ids so that
writing the same record twice (a retry, a second worker) leaves one record."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from workers.couch import Couch, Doc
from workers.errors import Conflict


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stable_id(kind: str, *parts: str) -> str:
    """``kind-<sha1 of parts>``: the same parts always give the same id."""
    digest = hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:24]
    return f"{kind}-{digest}"


def parked_record(worker: str, db: str, change: dict[str, Any], error: str, attempts: int) -> Doc:
    """A change that failed ``attempts`` times: kept with its document and the reason, never dropped."""
    doc = change.get("doc") or {}
    rev = str(doc.get("_rev") or (change.get("changes") or [{}])[0].get("rev", ""))
    return {
        "_id": stable_id("parked", worker, db, str(change.get("id")), rev),
        "kind": "parked",
        "worker": worker,
        "db": db,
        "docId": change.get("id"),
        "rev": rev,
        "seq": change.get("seq"),
        "error": error,
        "attempts": attempts,
        "doc": doc,
        "createdAt": now_iso(),
    }


def receipt_id(doc_id: str, rev: str) -> str:
    return stable_id("receipt", doc_id, rev)


def receipt_record(db: str, source: str, doc_id: str, rev: str, seen_at: str) -> Doc:
    """When the server first saw a revision a device wrote (``seen_at``), before it is copied into ``db``: the
    conflict resolver clamps the revision's claimed time to it (:mod:`workers.conflicts.winner`). Written
    once: a later copy of the same revision keeps the first time."""
    return {"_id": receipt_id(doc_id, rev), "kind": "receipt", "db": db, "source": source, "docId": doc_id,
            "rev": rev, "createdAt": seen_at}


def receipts(couch: Couch, audit_db: str, refs: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
    """(doc id, rev) -> seconds since the epoch when the server first saw it, for the refs with a receipt."""
    if not refs:
        return {}
    wanted = {receipt_id(doc_id, rev): (doc_id, rev) for doc_id, rev in refs}
    out: dict[tuple[str, str], float] = {}
    for doc_id, doc in couch.get_many(audit_db, sorted(wanted)).items():
        if doc.get("kind") != "receipt":
            continue
        try:
            seen = datetime.fromisoformat(str(doc.get("createdAt")).replace("Z", "+00:00"))
        except ValueError:
            continue
        out[wanted[doc_id]] = seen.timestamp()
    return out


def write_once(couch: Couch, audit_db: str, record: Doc) -> bool:
    """Write an audit record unless one with its id exists already; True when this call wrote it."""
    try:
        couch.put(audit_db, dict(record))
        return True
    except Conflict:
        return False


def write_many_once(couch: Couch, audit_db: str, records: list[Doc]) -> int:
    """Write audit records in one request; existing ids are left as they are. Returns how many were new."""
    if not records:
        return 0
    result = couch.save_many(audit_db, [dict(r) for r in records])
    return len(result.ok)
