"""The conflict resolver: on every fieldsync database, each document with conflicting leaf revisions is
resolved latest-wins (:mod:`workers.conflicts.winner`).

Per batch of the feed (read without documents: ``style=all_docs`` lists every leaf of each change, and a
document with one leaf has no conflict; the next batch's reads run while this one's writes do), two reads at
once: one ``_bulk_get`` of every leaf of every document with several, and the receipts of those leaves (main
database); then one ``_bulk_docs`` of audit records (deterministic ids: a second resolver or a replay writes
nothing new; a resolution whose losers hold nothing the winner does not is not audited, see
:func:`loses_nothing`), then one ``_bulk_docs`` on the database that writes each
winning body on top of the current winning revision and deletes every other leaf. Writing on top of a known
leaf never creates a conflict: if someone else wrote meanwhile, CouchDB answers 409 and the next change of that
document is resolved instead. The current winning revision is the one CouchDB (and PouchDB) shows, computed
from the leaves as they compute it (:func:`current_winner`).

Interaction-log documents in the per-user meta databases are left to the summarizer, which merges them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Any

from workers.audit import now_iso, receipts, stable_id, write_many_once, write_once
from workers.conflicts.winner import Decision, candidate, choose, fields_for
from workers.couch import Couch, Doc
from workers.errors import Conflict, FieldsyncError, NotFound
from workers.follower import Worker, content
from workers.logs import log_event
from workers.nodes import STALE_READ_WAIT_S, stale_read_pauses
from workers.parallel import CouchPool
from workers.settings import Settings

log = logging.getLogger("fieldsync.conflicts")

SKIP_TYPES_BY_KIND = {"user-meta": {"interaction-log"}}
# not the area databases: their conflicts are copies of the main database's, settled there once and copied back
# by the sync worker (settling them in two places would make new conflicts)
CONFLICT_KINDS = frozenset({"main", "user-meta", "users-meta", "audit"})
# batches whose writes (audit records, then resolutions) run at once: one's audit beside the other's resolutions
WRITES_IN_FLIGHT = 2


def audit_id(db: str, doc_id: str, loser_revs: list[str]) -> str:
    """Keyed by the losing revisions: a second resolver that sees the first one's write half done (winner
    written, losers not yet deleted) finds the same losers, hence the same resolution."""
    return stable_id("conflict", db, doc_id, *sorted(loser_revs))


def audit_record(db: str, doc_id: str, current_rev: str, decision: Decision) -> Doc:
    return {
        "_id": audit_id(db, doc_id, [d["_rev"] for d in decision.losers]),
        "kind": "conflict",
        "db": db,
        "docId": doc_id,
        "docType": decision.winner.get("type"),
        "rule": decision.rule,
        "times": decision.times,
        "currentRev": current_rev,
        "winnerRev": decision.winner["_rev"],
        "winner": decision.winner,
        "losers": decision.losers,
        "createdAt": now_iso(),
    }


def resolution_writes(current_rev: str, decision: Decision) -> list[Doc]:
    """The ``_bulk_docs`` entries that settle one document: the winning body on top of the current revision,
    every other living leaf deleted (bare tombstones stay as they are: they are deleted already)."""
    writes: list[Doc] = []
    winner = decision.winner
    body = {k: v for k, v in winner.items() if not k.startswith("_") or k in ("_id", "_attachments")}
    if winner.get("_deleted"):
        body["_deleted"] = True
    if winner["_rev"] != current_rev:
        # the winning body moves on top of the current revision; its own leaf goes, like every loser
        writes.append({**body, "_rev": current_rev})
        if not winner.get("_deleted"):
            writes.append({"_id": winner["_id"], "_rev": winner["_rev"], "_deleted": True})
    for loser in decision.losers:
        if loser["_rev"] == current_rev or loser.get("_deleted"):
            continue
        writes.append({"_id": loser["_id"], "_rev": loser["_rev"], "_deleted": True})
    return writes


def loses_nothing(decision: Decision) -> bool:
    """True when every losing leaf is the winner's very content (or a bare tombstone): the resolution then loses
    nothing a revert could bring back, and is not audited. This is what a second resolver sees of a first one's
    resolution in the making (the winner's body already on top of the current revision, the winning leaf itself
    not yet deleted: two leaves with one content), and what a device's edit copied to the server by two paths
    looks like."""
    winner = decision.winner
    return all(
        (bool(loser.get("_deleted")) == bool(winner.get("_deleted")) and content(loser) == content(winner))
        or (loser.get("_deleted") and not _has_time(loser))
        for loser in decision.losers
    )


def current_winner(leaves: list[Doc]) -> str:
    """The revision CouchDB and PouchDB show as the document's (``_rev``): of the living leaves (of all of
    them when every one is deleted), the one with the longest history, then the greatest revision id."""
    living = [leaf for leaf in leaves if not leaf.get("_deleted")] or leaves

    def order(leaf: Doc) -> tuple[int, str]:
        generation, _, rev_id = str(leaf["_rev"]).partition("-")
        return (int(generation) if generation.isdigit() else 0, rev_id)

    return str(max(living, key=order)["_rev"])


def read_leaves(couch: Couch, db: str, refs: list[tuple[str, str]], first: list[Doc] | None = None, *,
                wait_s: float = STALE_READ_WAIT_S) -> list[Doc]:
    """The leaves ``refs`` (id, revision) that the feed listed, by ``_bulk_get`` (``first``: a first read's
    answer, when made already). On a cluster that read can lag the feed: the feed lists a leaf that one copy of
    the shard holds (a node's own write brought back, a replication) while the two copies that answer have yet
    to take it, and the document would look settled while it holds two leaves. Such leaves are read again, a
    little later, for ``wait_s`` at most; one still missing after that (purged meanwhile) is logged."""
    leaves = list(first) if first is not None else couch.bulk_get(db, refs)
    missing = set(refs) - {(str(leaf["_id"]), str(leaf["_rev"])) for leaf in leaves}
    waited = 0.0
    for pause in stale_read_pauses(wait_s):
        if not missing:
            break
        time.sleep(pause)
        waited += pause
        found = couch.bulk_get(db, sorted(missing))
        leaves.extend(found)
        missing -= {(str(leaf["_id"]), str(leaf["_rev"])) for leaf in found}
    if missing:
        log_event(log, "leaves not readable", logging.WARNING, db=db, count=len(missing),
                  leaves=[f"{doc_id} {rev}" for doc_id, rev in sorted(missing)[:10]], waited_s=round(waited, 2))
    return leaves


@dataclass
class Batch:
    """A batch decided: its audit records, the writes that settle it, and the revisions it keeps in place."""

    records: list[Doc] = field(default_factory=list)
    writes: list[Doc] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # doc id -> current revision left as it is
    settled: int = 0


@dataclass
class Reads:
    """What settling a batch of documents needs, read at once (:meth:`ConflictResolver._read`)."""

    refs: list[tuple[str, str]]
    leaves: Future[list[Doc]]
    receipts: Future[dict[tuple[str, str], float]]


class ConflictResolver(Worker):
    name = "conflicts"
    # a page of the feed is 5 batches: the next batch's reads overlap this one's writes
    batch_factor = 5

    def __init__(self, couch: Couch, settings: Settings) -> None:
        super().__init__()
        self.couch = couch
        self.settings = settings
        self.pool = CouchPool(couch, threads=3, name="conflicts-reads")
        self.writers = CouchPool(couch, threads=WRITES_IN_FLIGHT, name="conflicts-writes")

    def follows(self, kind: str) -> bool:
        return kind in CONFLICT_KINDS

    def feed_docs(self, db: str) -> bool:
        """Every feed is read without documents: most changes have one leaf (nothing to resolve), and most of
        the rest are this worker's own writes (its resolutions, its audit records), skipped by revision."""
        return False

    def process(self, db: str, changes: list[dict[str, Any]]) -> int:
        """A page of the feed (``batch_factor`` batches) is settled a batch of documents at a time, as a
        pipeline: the reads of the next batch and the writes of the one before run while this one is decided,
        and two batches' writes are in flight at once (the batches hold different documents: a page of the feed
        names each document once). Within a batch the audit records are written before the resolutions; the
        page's checkpoint comes after every write of the page has ended."""
        conflicted = [change for change in changes if len(change.get("changes", [])) > 1]
        size = max(1, self.settings.batch_size)
        parts = [conflicted[start : start + size] for start in range(0, len(conflicted), size)]
        written = 0
        writing: deque[Future[int]] = deque()
        reading = self._read(db, parts[0]) if parts else None
        try:
            for k in range(len(parts)):
                assert reading is not None
                reads, reading = reading, (self._read(db, parts[k + 1]) if k + 1 < len(parts) else None)
                writing.append(self._submit_write(db, self._decide(db, reads)))
                while len(writing) >= WRITES_IN_FLIGHT:
                    written += writing.popleft().result()
        finally:
            # no write is left running behind the caller's back, whatever failed; the first error is raised
            errors = [f.exception() for f in writing]
            if reading is not None:
                unread: list[Future[Any]] = [reading.leaves, reading.receipts]
                wait(unread)
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
        return written + sum(f.result() for f in writing)

    def _read(self, db: str, changes: list[dict[str, Any]]) -> Reads:
        """Two reads that need only the leaves, at once: the leaves' bodies, and the receipts of devices'
        revisions in the main database (their claimed times are clamped to them)."""
        refs = [(str(change["id"]), str(r["rev"])) for change in changes for r in change["changes"] if r.get("rev")]
        main = db == self.settings.dbs.main
        return Reads(
            refs=refs,
            leaves=self.pool.submit(lambda c: c.bulk_get(db, refs)),
            receipts=self.pool.submit(lambda c: receipts(c, self.settings.dbs.audit, refs) if main else {}),
        )

    def _decide(self, db: str, reads: Reads) -> Batch:
        """Each document's winner, its audit record (unless it loses nothing) and the writes that settle it."""
        skip_types = SKIP_TYPES_BY_KIND.get(self.settings.dbs.kind(db) or "", set())
        by_doc: dict[str, list[Doc]] = {}
        for leaf in read_leaves(self.couch, db, reads.refs, reads.leaves.result()):
            by_doc.setdefault(str(leaf["_id"]), []).append(leaf)
        seen: dict[str, dict[str, float]] = {}
        for (doc_id, rev), at in reads.receipts.result().items():
            seen.setdefault(doc_id, {})[rev] = at
        batch = Batch()
        for doc_id, fetched in by_doc.items():
            current = current_winner(fetched)
            if next(leaf for leaf in fetched if leaf["_rev"] == current).get("type") in skip_types:
                continue
            living = [leaf for leaf in fetched if not leaf.get("_deleted")]
            if len(living) < 2 and not any(leaf.get("_deleted") and _has_time(leaf) for leaf in fetched):
                continue  # resolved meanwhile
            decision = choose(fetched, seen.get(doc_id))
            batch.settled += 1
            if not loses_nothing(decision):
                batch.records.append(audit_record(db, doc_id, current, decision))
            batch.writes.extend(resolution_writes(current, decision))
            if decision.winner["_rev"] == current:
                batch.kept[doc_id] = current
        return batch

    def _submit_write(self, db: str, batch: Batch) -> Future[int]:
        return self.writers.submit(lambda couch: self._write(couch, db, batch))

    def _write(self, couch: Couch, db: str, batch: Batch) -> int:
        """The audit records first: a kill between the two writes leaves an audit of a resolution that the
        replay does (deterministic ids), never a resolution without its audit."""
        write_many_once(couch, self.settings.dbs.audit, batch.records)
        results = couch.bulk_docs(db, batch.writes)
        self.own_writes.add_results(results)
        self._own_kept(batch.kept, results)
        written = sum(1 for r in results if not r.get("error"))
        lost = sum(1 for r in results if r.get("error") == "conflict")
        log_event(log, "resolved", db=db, documents=batch.settled, audited=len(batch.records), writes=written,
                  raced=lost)
        return written

    def _own_kept(self, kept: dict[str, str], results: list[dict[str, Any]]) -> None:
        """A resolution that keeps the current revision only deletes the other leaves: the feed then lists that
        revision beside this worker's tombstones. Once every deletion of the document is in, the pair is taken
        as this worker's own too, so that the echo is not read again as a conflict; a leaf anyone adds later is
        not, and is resolved as before."""
        refused = {str(r.get("id")) for r in results if r.get("error")}
        for doc_id, rev in kept.items():
            if doc_id not in refused:
                self.own_writes.add(doc_id, rev)


def _has_time(doc: Doc) -> bool:
    return candidate(doc, fields_for(doc)).time is not None


# ------------------------------------------------------------------------------------------- operator commands


def list_resolutions(couch: Couch, settings: Settings, db: str | None = None, limit: int = 100) -> list[Doc]:
    rows = couch.view(settings.dbs.audit, "audit", "by_kind", reduce=False, include_docs=True,
                      startkey=["conflict", {}], endkey=["conflict"], descending=True, limit=limit)
    out = [row["doc"] for row in rows if row.get("doc")]
    return [d for d in out if db is None or d.get("db") == db]


def revert(couch: Couch, settings: Settings, audit_doc_id: str, rev: str | None = None) -> Doc:
    """Restore a losing body of a resolution as the new current revision (audited too); idempotent."""
    record = couch.get(settings.dbs.audit, audit_doc_id)
    if record is None or record.get("kind") != "conflict":
        raise NotFound(f"{audit_doc_id}: no conflict resolution with this id in {settings.dbs.audit}")
    losers: list[Doc] = record.get("losers", [])
    living = [d for d in losers if not d.get("_deleted")] or losers
    if rev is not None:
        chosen = next((d for d in losers if d["_rev"] == rev), None)
        if chosen is None:
            raise NotFound(f"{audit_doc_id}: revision {rev} is not among the losers "
                           f"({', '.join(d['_rev'] for d in losers)})")
    elif len(living) == 1:
        chosen = living[0]
    else:
        raise FieldsyncError(f"{audit_doc_id}: several losing revisions; choose one with --rev "
                             f"({', '.join(d['_rev'] for d in living)})")
    revert_id = stable_id("revert", audit_doc_id, chosen["_rev"])
    done = couch.get(settings.dbs.audit, revert_id)
    if done is not None:
        return done
    db, doc_id = record["db"], record["docId"]
    now = couch.get(db, doc_id)
    body = {k: v for k, v in chosen.items() if not k.startswith("_") or k == "_id"}
    if now is not None:
        body["_rev"] = now["_rev"]
    try:
        couch.put(db, body)
    except Conflict:
        raise FieldsyncError(f"{doc_id} in {db} changed while reverting: run the revert again") from None
    entry = {
        "_id": revert_id, "kind": "revert", "db": db, "docId": doc_id, "resolution": audit_doc_id,
        "restoredRev": chosen["_rev"], "replacedRev": now["_rev"] if now else None, "newRev": body["_rev"],
        "replaced": now, "createdAt": now_iso(),
    }
    write_once(couch, settings.dbs.audit, entry)
    log_event(log, "reverted", db=db, doc_id=doc_id, resolution=audit_doc_id, restored=chosen["_rev"])
    return entry
