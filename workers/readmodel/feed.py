"""Keeping the read model (:mod:`workers.readmodel.store`) up to date from the main database's change feed.

``ReadModel.catch_up`` reads ``_changes`` from the index's own position to the end. On a fresh index it reads
the documents with the feed (a rebuild); afterwards it reads the feed without documents, compares each change's
revision with the one the index holds, and fetches (``_all_docs?keys=``) only what differs: the plan worker's
own writes are in the index already (:meth:`ReadModel.remember`, with the revisions of the ``_bulk_docs``
answers), so following them costs one small page, not their bodies again.

An index file that is missing, of another server, of another database or of an earlier incarnation of this
one (deleted and created again), or corrupt, is discarded and rebuilt from the start of the feed, with progress
in the log. A position the server refuses (or that is ahead of the database) is treated the same way.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from workers.couch import Couch, Doc
from workers.errors import ServerError
from workers.logs import log_event
from workers.readmodel.store import CorruptIndex, Store

log = logging.getLogger("fieldsync.readmodel")

INCARNATION = "fieldsync-readmodel"  # a _local document of the indexed database (admins only: the main database)
REBUILD_PAGE = 2000
PAGE = 2000


class ReadModel:
    def __init__(self, couch: Couch, db: str, path: Path) -> None:
        self.couch = couch
        self.db = db
        self.path = path
        self._store: Store | None = None
        self.rebuilt = False

    # ------------------------------------------------------------------ opening

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = self._open()
        return self._store

    def _identity(self) -> dict[str, str]:
        info = self.couch.server_info()
        server = str(info.get("uuid") or self.couch.url)
        marker = self.couch.get_local(self.db, INCARNATION)
        if marker is None or not marker.get("id"):
            marker = {"id": secrets.token_hex(16)}
            self.couch.put_local(self.db, INCARNATION, marker)
        return {"server": server, "db": self.db, "incarnation": str(marker["id"])}

    def _open(self) -> Store:
        identity = self._identity()
        try:
            store = Store(self.path)
            known = {key: store.meta(key) for key in identity}
            if all(v is None for v in known.values()):
                store.set_meta(identity)
                return store
            if known == identity:
                return store
            store.close()
            why = "another server, database or incarnation"
        except CorruptIndex as exc:
            why = f"unusable ({exc})"
        self._rebuild(why)
        store = Store(self.path)
        store.set_meta(identity)
        return store

    def _rebuild(self, why: str) -> None:
        log_event(log, "read model rebuild", logging.WARNING, db=self.db, path=str(self.path), reason=why)
        if self._store is not None:
            self._store.close()
        self._store = None
        Store.discard(self.path)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # ------------------------------------------------------------------ following

    def catch_up(self) -> int:
        """Read the feed to its end; returns how many changes were read."""
        read = 0
        started = time.perf_counter()
        rebuilding = self.store.seq in (0, "0", None)  # from the start: every page with its documents
        while True:
            store = self.store
            since = store.seq
            if since in (0, "0", None):
                rebuilding = True
            try:
                page = self.couch.changes(self.db, since, limit=REBUILD_PAGE if rebuilding else PAGE,
                                          include_docs=rebuilding)
            except ServerError as exc:
                if exc.status != 400 or rebuilding:
                    raise
                self._rebuild(f"the server refused the position: {exc}")
                read = 0
                continue
            if not page.results:
                current = self.couch.update_seq(self.db) if read == 0 and isinstance(since, int) else None
                if isinstance(current, int) and isinstance(since, int) and since > current:
                    self._rebuild(f"position {since} is ahead of the database ({current})")
                    continue
                return read
            if rebuilding:
                docs = [c["doc"] for c in page.results if c.get("doc")]
            else:
                docs = self._changed(store, page.results)
            store.apply(docs, page.last_seq)
            read += len(page.results)
            if rebuilding and read % (REBUILD_PAGE * 25) < REBUILD_PAGE:
                log_event(log, "read model rebuild progress", db=self.db, changes=read, docs=store.count(),
                          s=round(time.perf_counter() - started, 1))
            if len(page.results) < (REBUILD_PAGE if rebuilding else PAGE):
                if rebuilding:
                    log_event(log, "read model built", db=self.db, changes=read, docs=store.count(),
                              bytes=store.size_bytes(), s=round(time.perf_counter() - started, 1))
                    self.rebuilt = True
                return read

    def _changed(self, store: Store, changes: list[dict[str, Any]]) -> list[Doc]:
        """The documents of ``changes`` whose revision the index does not hold (deletions as tombstones)."""
        latest: dict[str, dict[str, Any]] = {}
        for change in changes:
            doc_id = str(change.get("id", ""))
            if doc_id and not doc_id.startswith("_design/"):
                latest[doc_id] = change
        held = store.revs(list(latest))
        wanted: list[str] = []
        out: list[Doc] = []
        for doc_id, change in latest.items():
            revs = [str(r.get("rev")) for r in change.get("changes", []) if r.get("rev")]
            if change.get("deleted"):
                if doc_id in held:
                    out.append({"_id": doc_id, "_deleted": True})
            elif not revs or held.get(doc_id) != revs[0]:
                wanted.append(doc_id)
        if wanted:
            found = self.couch.get_many(self.db, wanted)
            out.extend(found.get(i) or {"_id": i, "_deleted": True} for i in wanted)
        return out

    def remember(self, docs: Iterable[Doc]) -> None:
        """What the worker has just written (bodies with the revisions of the ``_bulk_docs`` answers): in the
        index at once, before the feed brings it."""
        self.store.apply(docs)
