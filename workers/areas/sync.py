"""The sync worker: two-way replication between the main database and every operational-area database.

- main -> area (following the main database): each changed document goes, with its revision history and every
  leaf revision, to the area databases it belongs to (:func:`workers.areas.routing.areas_of`). A structure,
  client, event or task of an area without a database creates it, with its ``_security`` from the assignments,
  its validation function, its chain of parent jurisdictions, the plans covering it and ``settings``.
- area -> main (following each area database): what devices wrote goes to the main database with its history,
  after the checks the area's ``validate_doc_update`` cannot make (a family living in another area...):
  a refused revision is parked in the audit database with the reason, never copied, never lost.
- a change of the ``assignments`` document or of a plan rewrites the areas' ``_security``.

Revisions keep their ids both ways (``_revs_diff`` + ``_bulk_get?revs=true`` + ``_bulk_docs new_edits:false``),
so copying twice writes nothing, two offline edits meet as a conflict in the main database, and the conflict
resolver's settlement (which runs on the main database only) flows back to every area and device.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from workers.areas import assignments
from workers.areas.index import MainIndex
from workers.areas.replicate import Copied, copy_revisions, fan_out, first_revision, write_first_revisions
from workers.areas.routing import (
    ASSIGNMENTS_ID,
    NEW,
    SETTINGS_ID,
    OnServer,
    areas_of,
    chain,
    device_write_refusal,
    parent_rev,
    plan_covers,
)
from workers.audit import now_iso, receipt_record, stable_id, write_many_once
from workers.couch import Couch, Doc
from workers.follower import OwnWrites, Worker
from workers.logs import log_event
from workers.parallel import CouchPool
from workers.readmodel.store import generation
from workers.settings import Settings

log = logging.getLogger("fieldsync.sync")

SYNC_KINDS = frozenset({"main", "area"})
REFRESH_EVERY = 5.0  # seconds between two looks at which area databases exist
FAST_LANE_WAIT_S = 5.0  # the ordered fan-out waits this long at most for the fast lane's copies of its changes
# marks the tombstones this worker writes over refused revisions in an area database: they stay there (a device
# that forges the mark only gets its own deletion ignored, and devices may not delete anyway)
WITHDRAWN = "fieldsyncWithdrawn"


class AreaSync(Worker):
    name = "sync"
    # pages of FIELDSYNC_BATCH_SIZE x 5 changes: a page is split among the areas, and each area's share costs
    # two requests (_revs_diff, _bulk_docs) whatever its size
    batch_factor = 5
    # what devices wrote in one area is copied while another area's batch runs: the state shared by batches is
    # the routing index (a cache of the main database), ``own_writes`` (locked) and the known areas (replaced
    # whole, never changed in place, under a lock)
    parallel = True

    def __init__(self, couch: Couch, settings: Settings) -> None:
        super().__init__()
        self.couch = couch
        self.settings = settings
        self.index = MainIndex(couch, settings.dbs.main)
        # the areas of one batch are written several at once; the fast lane has its own threads, so that it
        # never queues behind the ordered fan-out of an activation's thousands of tasks
        self.fan_pool = CouchPool(couch, name="sync-fan-out")
        self.fast_pool = CouchPool(couch, name="sync-fast-lane")
        # what devices wrote: the reads of an area's batch at once (several areas' batches run at once too)
        self.up_pool = CouchPool(couch, threads=8, name="sync-upstream")
        self._known: dict[str, list[str]] = {}
        self._refreshed = 0.0
        self._areas_lock = threading.RLock()
        self.early = EarlyDocs()
        # the documents the fast lane is copying right now (by id): main's feed lists them as soon as the plan
        # worker's write lands, usually before the fast lane's copies do, and the ordered fan-out would copy
        # them a second time (46 of 106 tasks, 50 devices at once, session 14). It waits for those copies instead
        self.fast_lane = OwnWrites()

    def follows(self, kind: str) -> bool:
        return kind in SYNC_KINDS

    def feed_docs(self, db: str) -> bool:
        """An area's feed is read without documents: most of its changes are this worker's own copies from
        the main database (skipped by revision), and ``_bulk_get`` fetches what devices wrote anyway."""
        return db == self.settings.dbs.main

    def page_read(self, db: str, since: Any, changes: list[dict[str, Any]], last_seq: Any) -> None:
        if db == self.settings.dbs.main and since in (0, "0", None):
            self.early.from_start()

    def process(self, db: str, changes: list[dict[str, Any]]) -> int:
        self.refresh()
        if db == self.settings.dbs.main:
            return self._downstream(changes)
        area = self.settings.dbs.area_of(db)
        return self._upstream(area, db, changes) if area is not None else 0

    # --------------------------------------------------------------------------------------- areas

    def known(self) -> dict[str, list[str]]:
        self.refresh()
        return self._known

    def refresh(self, force: bool = False) -> None:
        """Look at which area databases exist; one that appeared (e.g. made by ``fieldsync assign``) gets its
        jurisdictions, plans and settings."""
        if not force and time.monotonic() - self._refreshed < REFRESH_EVERY:
            return
        with self._areas_lock:
            if not force and time.monotonic() - self._refreshed < REFRESH_EVERY:
                return  # another batch refreshed meanwhile
            self._refreshed = time.monotonic()
            for area in assignments.known_areas(self.couch, self.settings):
                if area not in self._known:
                    self._know(area, chain(area, self.index))
                    self._bootstrap(area)

    def _know(self, area: str, parents: list[str]) -> None:
        """A new dictionary: a batch routing with the previous one meanwhile is not disturbed."""
        self._known = {**self._known, area: parents}

    def _open_area(self, area: str) -> None:
        """A new area: its database (security from the assignments), then what every area holds."""
        with self._areas_lock:
            parents = chain(area, self.index)
            current, _ = assignments.load(self.couch, self.settings)
            plans = self._plans()
            security = assignments.security_for(area, parents, current, plans)
            if assignments.ensure_area(self.couch, self.settings, area, security):
                log_event(log, "area created", area=area, db=self.settings.dbs.area(area))
            self._know(area, parents)
            self._bootstrap(area, plans)

    def _bootstrap(self, area: str, plans: list[Doc] | None = None) -> int:
        parents = self._known[area]
        plans = plans if plans is not None else self._plans()
        ids = [*parents, SETTINGS_ID, *(str(p["_id"]) for p in plans if plan_covers(p, parents))]
        # the area's own tasks and events (a jurisdiction-level task written before its database existed)
        early = self.early.of_area(area)
        if early is None:
            rows = self.couch.view(self.settings.dbs.main, "fieldsync", "by_area", reduce=False,
                                   startkey=[area], endkey=[area, {}])
            early = [str(r["id"]) for r in rows]
        ids += early
        leaves = {}
        for row in self.couch.all_docs(self.settings.dbs.main, ids, include_docs=False):
            value = row.get("value") or {}
            if row.get("id") and value.get("rev") and not value.get("deleted"):
                leaves[str(row["id"])] = [str(value["rev"])]
        copied = copy_revisions(self.couch, self.settings.dbs.main, self.settings.dbs.area(area), leaves)
        self._own(copied.written)
        return copied.count

    def _plans(self) -> list[Doc]:
        """Every plan: as the main feed showed them, when this process read it from the start (or has read
        the view once and followed the feed since), else from the ``plans_by_status`` view."""
        plans = self.early.plans()
        if plans is None:
            plans = assignments.all_plans(self.couch, self.settings)
            self.early.learn_plans(plans)
        return plans

    # --------------------------------------------------------------------------------------- main -> area

    def _downstream(self, changes: list[dict[str, Any]]) -> int:
        changes = self._after_fast_lane(changes)
        bodies: list[tuple[dict[str, Any], Doc]] = []
        for change in changes:
            doc = change.get("doc") or {}
            bodies.append((change, self._previous_body(doc) if doc.get("_deleted") else doc))
        self.early.saw([doc for doc in (change.get("doc") for change in changes) if doc], self._known)
        live = [body for _, body in bodies if body]
        self.index.learn(live)  # replaces what the index knew of these documents
        self.index.prefetch(live)
        by_area: dict[str, dict[str, list[str]]] = {}
        security_dirty = False
        for change, body in bodies:
            doc_id = str(change.get("id"))
            if doc_id == ASSIGNMENTS_ID or body.get("type") == "Plan":
                security_dirty = True
            if not body:
                continue
            areas = areas_of(body, self.index, self._known)
            for area in sorted(areas - set(self._known)):
                self._open_area(area)
            if body.get("type") == "Plan":  # a plan reaches areas created above too
                areas = areas_of(body, self.index, self._known)
            leaves = [str(r["rev"]) for r in change.get("changes", []) if r.get("rev")]
            for area in areas:
                by_area.setdefault(area, {})[doc_id] = leaves
        # every area of the batch at once: each revision read once from the main database
        started = time.perf_counter()
        area_db = {self.settings.dbs.area(area): area for area in by_area}
        # a new document's body came with the feed: only later revisions are read again, with their history
        at_hand = [doc for change, doc in bodies
                   if [r.get("rev") for r in change.get("changes", [])] == [doc.get("_rev")]]
        copied_to = fan_out(self.fan_pool, self.settings.dbs.main,
                            {db: by_area[area] for db, area in area_db.items()}, at_hand)
        ms = round((time.perf_counter() - started) * 1000, 1)
        written = 0
        for db, copied in sorted(copied_to.items()):
            self._own(copied.written)
            written += copied.count
            log_event(log, "sync batch", direction="main->area", area=area_db[db], docs=len(by_area[area_db[db]]),
                      revisions=copied.count, ms=ms)
        if security_dirty:
            changed = assignments.apply_security(self.couch, self.settings, self.index, sorted(self._known),
                                                 plans=self.early.plans())
            if changed:
                log_event(log, "area security refreshed", areas=",".join(changed))
        return written

    def expedite(self, docs: list[Doc]) -> int:
        """The fast lane: documents another worker of this process has just written to the main database (the
        plan worker's tasks for an event) copied now to the areas that have a database, without waiting for
        main's feed to reach them (an activation under way puts thousands of tasks before them). New documents
        are written to each area at once (:func:`write_first_revisions`: one request per area, several areas at a
        time); later revisions go through :func:`fan_out` with their history. The ordered fan-out finds these
        revisions in the areas later and writes nothing (``_revs_diff``); a document whose area has no database
        yet waits for it (the ordered fan-out creates the database)."""
        live = [doc for doc in docs if doc.get("_id") and doc.get("_rev") and not doc.get("_deleted")]
        if not live:
            return 0
        self.fast_lane.expect(live)
        try:
            return self._expedite(live)
        finally:
            self.fast_lane.settle(str(doc["_id"]) for doc in live)

    def _expedite(self, live: list[Doc]) -> int:
        started = time.perf_counter()
        known = self.known()
        self.index.prefetch(live)
        firsts: dict[str, list[Doc]] = {}
        later: dict[str, dict[str, list[str]]] = {}
        for doc in live:
            first = first_revision(doc)
            for area in areas_of(doc, self.index, known) & known.keys():
                db = self.settings.dbs.area(area)
                if first is not None:
                    firsts.setdefault(db, []).append(first)
                else:
                    later.setdefault(db, {})[str(doc["_id"])] = [str(doc["_rev"])]
        copied_to = write_first_revisions(self.fast_pool, firsts)
        for db, copied in fan_out(self.fast_pool, self.settings.dbs.main, later).items():
            copied_to.setdefault(db, Copied()).written.extend(copied.written)
        ms = round((time.perf_counter() - started) * 1000, 1)
        written = 0
        for db, copied in sorted(copied_to.items()):
            self._own(copied.written)
            written += copied.count
            log_event(log, "sync batch", direction="main->area fast", area=self.settings.dbs.area_of(db),
                      docs=copied.count, revisions=copied.count, ms=ms)
        return written

    def _previous_body(self, tombstone: Doc) -> Doc:
        """The last body of a deleted document (which areas held it), while the server still has it."""
        doc_id = str(tombstone.get("_id"))
        full = self.couch.get(self.settings.dbs.main, doc_id, rev=tombstone.get("_rev"), revs=True) or {}
        history = full.get("_revisions") or {}
        ids, start = history.get("ids") or [], int(history.get("start") or 0)
        if len(ids) < 2:
            return {}
        previous = self.couch.get(self.settings.dbs.main, doc_id, rev=f"{start - 1}-{ids[1]}") or {}
        return {**previous, "_deleted": True} if previous else {}

    def _after_fast_lane(self, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The changes of main's feed, less those the fast lane has just copied: when it is copying some of
        them, its copies are waited for (``FAST_LANE_WAIT_S`` at most), and a change whose every leaf it wrote
        is this worker's own write, as the follower counts them. A copy that failed or is still under way is
        left to the ordered fan-out, as before."""
        ids = [str(change.get("id")) for change in changes]
        if not any(self.fast_lane.expecting(doc_id) for doc_id in ids):
            return changes
        self.fast_lane.wait_settled(ids, FAST_LANE_WAIT_S)

        def copied(change: dict[str, Any]) -> bool:
            doc_id = str(change.get("id"))
            leaves = [str(r["rev"]) for r in change.get("changes", []) if r.get("rev")]
            return bool(leaves) and all((doc_id, rev) in self.own_writes for rev in leaves)

        return [change for change in changes if not copied(change)]

    def _own(self, docs: list[Doc]) -> None:
        for doc in docs:
            self.own_writes.add(str(doc["_id"]), str(doc["_rev"]))

    # --------------------------------------------------------------------------------------- area -> main

    def _upstream(self, area: str, db: str, changes: list[dict[str, Any]]) -> int:
        """What devices wrote, checked against the main database (:func:`device_write_refusal`) before any of it
        is copied there: refused revisions are audited and removed from the area's database (the audit keeps
        their bodies), accepted ones get a receipt (when the server first saw them) and are copied."""
        started = time.perf_counter()
        leaves = {str(c["id"]): [str(r["rev"]) for r in c.get("changes", []) if r.get("rev")] for c in changes}
        on_server: dict[str, OnServer] = {}
        # what the main database holds under these ids is read while the revisions are (copy_revisions' pool)
        main_rows = self.up_pool.submit(lambda client: self._main_rows(client, sorted(leaves)))

        def learn(docs: list[Doc]) -> None:
            on_server.update(self._on_server(docs, main_rows.result()))
            # only new ids teach the index (a family's new structure in the same batch): a device's version of
            # an existing document must not change how the main database's documents are routed
            fresh = [d for d in docs if not d.get("_deleted") and on_server.get(str(d["_id"]), NEW) == NEW]
            self.index.learn(fresh)
            self.index.prefetch(docs)

        def refuse(doc: Doc) -> str | None:
            return device_write_refusal(doc, area, self.index, self._known, on_server.get(str(doc["_id"]), NEW))

        def receipts(docs: list[Doc]) -> None:
            seen_at = now_iso()
            write_many_once(self.couch, self.settings.dbs.audit, [
                receipt_record(self.settings.dbs.main, db, str(d["_id"]), str(d["_rev"]), seen_at) for d in docs])

        copied = copy_revisions(self.couch, db, self.settings.dbs.main, leaves, refuse=refuse, before=learn,
                                accepted=receipts, ignore=lambda doc: bool(doc.get("_deleted") and doc.get(WITHDRAWN)),
                                pool=self.up_pool)
        if copied.refused:
            records = [_refused_record(db, doc, reason) for doc, reason in copied.refused]
            write_many_once(self.couch, self.settings.dbs.audit, records)
            for doc, reason in copied.refused:
                log_event(log, "refused", logging.WARNING, area=area, db=db, doc_id=doc.get("_id"),
                          rev=doc.get("_rev"), reason=reason)
            self._withdraw(db, [doc for doc, _ in copied.refused], on_server)
        if copied.count or copied.refused:
            log_event(log, "sync batch", direction="area->main", area=area, docs=len(leaves),
                      revisions=copied.count, refused=len(copied.refused),
                      ms=round((time.perf_counter() - started) * 1000, 1))
        return copied.count

    def _main_rows(self, client: Couch, ids: list[str]) -> dict[str, Doc]:
        """The main database's ``_all_docs`` rows (with documents) of ``ids``, by id."""
        return {str(row.get("key")): row for row in client.all_docs(self.settings.dbs.main, ids, include_docs=True)}

    def _on_server(self, docs: list[Doc], rows: dict[str, Doc]) -> dict[str, OnServer]:
        """What the main database holds under each id of ``docs`` (``rows``: :meth:`_main_rows` of them), and
        the revision each edit started from."""
        out: dict[str, OnServer] = {}
        for key in sorted({str(d["_id"]) for d in docs}):
            row = rows.get(key) or {}
            value = row.get("value") or {}
            if row.get("error") or not value:
                out[key] = NEW
            elif value.get("deleted"):
                out[key] = OnServer(None, deleted=True)
            else:
                out[key] = OnServer(row.get("doc"))
        # a task's protected fields are compared with the revision the device edited, when it is not current
        wanted = []
        for doc in docs:
            state = out.get(str(doc["_id"]))
            parent = parent_rev(doc)
            if doc.get("type") == "Task" and state and state.body and parent and parent != state.body.get("_rev"):
                wanted.append((str(doc["_id"]), parent))
        for found in self.couch.bulk_get(self.settings.dbs.main, wanted):
            state = out[str(found["_id"])]
            if not found.get("_deleted"):
                out[str(found["_id"])] = OnServer(state.body, state.deleted, found)
        return out

    def _withdraw(self, db: str, refused: list[Doc], on_server: dict[str, OnServer]) -> None:
        """Take refused revisions out of the area's database, so that no device of the area syncs them (the
        audit database keeps each body with the reason):

        - a refused edit of the main database's current revision is overwritten, in the area, by that current
          body, and the overwrite is copied to the main database: both converge on one revision whose content
          is the server's (the refused body remains only as a bodiless ancestor);
        - anything else (a new id, or a device's unrelated branch under a server id) is deleted on its own
          branch; the server's revision, if any, stays the area's winner.
        """
        tombstones: list[Doc] = []
        restores: list[Doc] = []
        for doc in refused:
            if doc.get("_deleted"):
                continue
            current = on_server.get(str(doc["_id"]), NEW).body
            if current is not None and str(current.get("_rev")) in _history(doc):
                body = {k: v for k, v in current.items() if not k.startswith("_") or k in ("_id", "_attachments")}
                restores.append({**body, "_rev": doc["_rev"]})
            else:
                tombstones.append({"_id": doc["_id"], "_rev": doc["_rev"], "_deleted": True, WITHDRAWN: True})
        results = self.couch.bulk_docs(db, tombstones + restores)
        self.own_writes.add_results(results)
        restored = {str(r["id"]): [str(r["rev"])] for r in results[len(tombstones):] if r.get("ok")}
        if restored:
            copied = copy_revisions(self.couch, db, self.settings.dbs.main, restored)
            self._own(copied.written)


def _history(doc: Doc) -> set[str]:
    """Every revision ``doc`` descends from (itself included), from its ``_revisions``."""
    history = doc.get("_revisions") or {}
    start, ids = history.get("start"), history.get("ids") or []
    if not isinstance(start, int):
        return {str(doc.get("_rev"))}
    return {f"{start - i}-{rev_id}" for i, rev_id in enumerate(ids)}


def _refused_record(db: str, doc: Doc, reason: str) -> Doc:
    body = {k: v for k, v in doc.items() if k != "_revisions"}
    return {
        "_id": stable_id("refused", db, str(doc.get("_id")), str(doc.get("_rev"))),
        "kind": "refused",
        "worker": "sync",
        "db": db,
        "docId": doc.get("_id"),
        "rev": doc.get("_rev"),
        "error": reason,
        "doc": body,
        "createdAt": now_iso(),
    }


EARLY_CAP = 100_000  # ids kept for areas without a database; past it, the view answers instead


class EarlyDocs:
    """What the main feed has shown this process that an area opened later needs, so that opening it asks no
    view of the main database (each first query of a view indexes every document written since, which on the
    embedded server took 29 s of a 42 s fan-out of 2,000 structures):

    - every plan (by id, the highest revision seen): an area's ``_security`` and the plans it holds;
    - the ids of the tasks (by ``groupIdentifier``) and events (by ``locationId``) of jurisdictions that had no
      area database when the feed showed them: what the ``by_area`` view lists for a new area.

    Both are complete only when this process read the main feed from its start (:meth:`from_start`); a worker
    that resumed from a checkpoint reads the views as before (the plans once, then kept up to date from the
    feed). Documents the feed shows later reach the area through the feed itself."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: dict[str, Doc] | None = None
        self._by_area: dict[str, set[str]] | None = None
        self._count = 0

    def from_start(self) -> None:
        with self._lock:
            if self._plans is None:
                self._plans = {}
            if self._by_area is None:
                self._by_area, self._count = {}, 0

    def plans(self) -> list[Doc] | None:
        with self._lock:
            return None if self._plans is None else list(self._plans.values())

    def learn_plans(self, plans: list[Doc]) -> None:
        with self._lock:
            if self._plans is None:
                self._plans = {}
        for plan in plans:
            self._keep_plan(plan)

    def of_area(self, area: str) -> list[str] | None:
        with self._lock:
            if self._by_area is None:
                return None
            return sorted(self._by_area.get(area, ()))

    def saw(self, docs: list[Doc], known: dict[str, list[str]]) -> None:
        """A page of the main feed (documents as listed: a deletion is its tombstone)."""
        for doc in docs:
            if assignments.is_plan(doc) or (doc.get("_deleted") and self._holds_plan(str(doc.get("_id")))):
                self._keep_plan(doc)
                continue
            kind = doc.get("type")
            place = doc.get("groupIdentifier") if kind == "Task" else doc.get("locationId") if kind == "Event" else None
            if not isinstance(place, str) or not place or place in known or doc.get("_deleted"):
                continue
            with self._lock:
                if self._by_area is None:
                    continue
                ids = self._by_area.setdefault(place, set())
                if str(doc["_id"]) not in ids:
                    ids.add(str(doc["_id"]))
                    self._count += 1
                if self._count > EARLY_CAP:
                    self._by_area = None  # too many to keep: the view answers

    def _holds_plan(self, doc_id: str) -> bool:
        with self._lock:
            return self._plans is not None and doc_id in self._plans

    def _keep_plan(self, doc: Doc) -> None:
        doc_id = str(doc.get("_id"))
        with self._lock:
            if self._plans is None:
                return
            held = self._plans.get(doc_id)
            if held is not None and generation(str(held.get("_rev", ""))) > generation(str(doc.get("_rev", ""))):
                return  # the view's answer was newer than this page of the feed
            if doc.get("_deleted") or not doc.get("jurisdiction"):
                self._plans.pop(doc_id, None)  # the view lists plans with jurisdictions only
            else:
                self._plans[doc_id] = doc
