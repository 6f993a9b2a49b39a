"""Keeping the read model (:mod:`workers.readmodel.store`) up to date from the main database's change feed.

``ReadModel.catch_up`` reads ``_changes`` from the index's own position to the end, without documents: it
compares each change's revision with the one the index holds and fetches (``_all_docs?keys=``) only what
differs. The plan worker's own writes are in the index already (:meth:`ReadModel.remember`, with the revisions
of the ``_bulk_docs`` answers), so following them costs one small page, not their bodies again. A new index is
first filled from a snapshot of the database (``_all_docs`` pages with documents), then follows the feed from
the position taken before the snapshot (:meth:`ReadModel._snapshot` says why nothing is missed).

An index file that is missing, of another server, of another database or of an earlier incarnation of this
one (deleted and created again), or corrupt, is discarded and rebuilt from the start of the feed, with progress
in the log. A position the server refuses (or that is ahead of the database) is treated the same way.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.couch import Couch, Doc
from workers.errors import ServerError
from workers.logs import log_event
from workers.nodes import stale_read_pauses
from workers.readmodel.store import CorruptIndex, Store, generation

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
        self._owner: int | None = None  # the thread that opened the store above: the one that follows the feed
        self._others: dict[int, Store] = {}  # connections of other threads (an activation's writers)
        self._lock = threading.Lock()
        self.rebuilt = False
        self._followed: Any = None  # the end of the last page of the follower's applied (see follow)
        # given by the worker: waits (a little) for those of the ids it has writes of in flight; True when it
        # waited for any. The index then holds their revisions from the answers, and need not read them
        self.in_flight: Callable[[list[str]], bool] | None = None

    # ------------------------------------------------------------------ opening

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = self._open()
            self._owner = threading.get_ident()
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
        self._followed = None
        self.close()
        Store.discard(self.path)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        with self._lock:
            others, self._others = list(self._others.values()), {}
        for store in others:
            store.close()

    def _thread_store(self) -> Store:
        """The store on a connection of the calling thread's own: SQLite serialises the writers of the file
        (WAL: readers are never blocked), and no transaction of one thread is joined by another's writes."""
        if self._store is None or threading.get_ident() == self._owner:
            return self.store
        with self._lock:
            store = self._others.get(threading.get_ident())
            if store is None:
                store = self._others[threading.get_ident()] = Store(self.path)
        return store

    # ------------------------------------------------------------------ following

    def catch_up(self) -> int:
        """Read the feed to its end (after a snapshot, when the index is new); returns how many changes and
        snapshot documents were read."""
        read = 0
        snapshot = False  # taken in this call: an empty database keeps position 0, and that is no reason to loop
        while True:
            store = self.store
            since = store.seq
            if since in (0, "0", None) and not snapshot:
                read += self._snapshot(store)
                snapshot = True
                continue
            try:
                page = self.couch.changes(self.db, since, limit=PAGE)
            except ServerError as exc:
                if exc.status != 400 or since in (0, "0", None):
                    raise
                self._rebuild(f"the server refused the position: {exc}")
                read, snapshot = 0, False
                continue
            if not page.results:
                current = self.couch.update_seq(self.db) if read == 0 and isinstance(since, int) else None
                if isinstance(current, int) and isinstance(since, int) and since > current:
                    self._rebuild(f"position {since} is ahead of the database ({current})")
                    read, snapshot = 0, False
                    continue
                return read
            store.apply(self._changed(store, page.results), page.last_seq)
            read += len(page.results)
            if len(page.results) < PAGE:
                return read

    @property
    def following(self) -> bool:
        """Whether the follower hands the index its pages (:meth:`follow`): the index then holds whatever the
        follower has read."""
        return self._followed is not None

    def refresh(self) -> None:
        """Up to date for a decision: nothing to do while the index follows the follower's pages (it holds what
        the follower has read, and a change the follower has yet to read is the feed rule's when it comes, as
        the module :mod:`workers.readmodel.lookup` says), else :meth:`catch_up`. Reading the feed to its end at
        every jurisdiction of an activation read each of its writes a second time."""
        if not self.following:
            self.catch_up()

    def follow(self, since: Any, changes: list[dict[str, Any]], last_seq: Any) -> None:
        """A page of the feed that the plan worker's follower has just read (``since`` to ``last_seq``, every
        change, the worker's own writes included), applied as :meth:`catch_up` applies its pages: the index
        follows the feed through the follower's reads instead of reading every change a second time (on the
        embedded server each change read costs a lookup of the document's revision tree).

        Safe because the index then holds every change up to ``since`` or further: the page is the one after
        the last page applied here (a chain of pages has no gap), or else the index first reads the feed to
        its end (:meth:`catch_up`), which is past any position the follower has read from. The position
        recorded is then the page's end, behind the index's own position at worst: whatever comes after it is
        read again, compared by revision, never missed."""
        if self._followed is None or self._followed != since:
            self.catch_up()
        store = self.store
        store.apply(self._changed(store, changes), last_seq)
        self._followed = last_seq

    def _snapshot(self, store: Store) -> int:
        """A new index from the database's documents as they are now, then the position the database had
        *before* the first page.

        The documents come in ``_all_docs`` pages: on CouchDB 3.5 (one node, 22,009 documents read three times
        in turn) 2,250-5,900 docs/s, against 1,800-1,940 for the feed with its documents. The feed from the
        position taken first brings again whatever changed during the snapshot, compared by revision
        (:meth:`_changed`): nothing is missed, and a document already read at its latest revision is not read
        again. A kill half-way leaves position 0: the next snapshot starts from an empty index, so a document
        deleted meanwhile is not left behind."""
        started = time.perf_counter()
        since = self.couch.update_seq(self.db)
        store.clear()
        read = 0
        startkey: str | None = None
        while True:
            params: dict[str, Any] = {"limit": REBUILD_PAGE + 1}
            if startkey is not None:
                params["startkey"] = startkey
            rows = self.couch.all_docs(self.db, include_docs=True, **params)
            store.apply(row["doc"] for row in rows[:REBUILD_PAGE] if row.get("doc"))
            read += len(rows[:REBUILD_PAGE])
            if len(rows) <= REBUILD_PAGE:
                break
            startkey = str(rows[REBUILD_PAGE]["id"])
            if read % (REBUILD_PAGE * 25) == 0:
                log_event(log, "read model rebuild progress", db=self.db, docs=read,
                          s=round(time.perf_counter() - started, 1))
        store.apply([], since if since is not None else 0)
        log_event(log, "read model built", db=self.db, docs=store.count(), bytes=store.size_bytes(),
                  s=round(time.perf_counter() - started, 1))
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
        unknown = [doc_id for doc_id, change in latest.items() if not change.get("deleted")
                   and [str(r.get("rev")) for r in change.get("changes", []) if r.get("rev")] != [held.get(doc_id)]]
        if unknown and self.in_flight is not None and self.in_flight(unknown):
            held.update(store.revs(unknown))  # what the answers waited for brought in
        wanted: dict[str, int] = {}  # id -> the lowest revision generation a read of it may answer
        out: list[Doc] = []
        for doc_id, change in latest.items():
            revs = [str(r.get("rev")) for r in change.get("changes", []) if r.get("rev")]
            if change.get("deleted"):
                if doc_id in held:
                    out.append({"_id": doc_id, "_deleted": True})
            elif len(revs) != 1:
                # several leaves (a follower's page lists every one: style=all_docs): which one wins is the
                # server's to say, so the document is read
                wanted[doc_id] = 0
            elif held.get(doc_id) != revs[0]:
                # the index may hold a later revision already (the worker's own write): never rolled back
                wanted[doc_id] = max(generation(revs[0]), generation(held.get(doc_id, "")))
        if wanted:
            out.extend(self._read(wanted))
        return out

    def _read(self, wanted: dict[str, int]) -> list[Doc]:
        """The current revisions of documents the feed lists as live, read by quorum (``_all_docs?keys=``).

        On a cluster the feed may list a write that one copy of its shard holds while the read's quorum is
        answered by the two copies that have yet to take it (writes are acknowledged by two of three): the
        read says "missing", or gives an earlier revision than the feed's (or than the index holds from the
        worker's own ``_bulk_docs`` answer). Taken as it is, that would drop the document from the index (or
        roll it back) while the position moved past its change, and no later page would bring it back. Such a
        read is made again, a little later, for ``nodes.STALE_READ_WAIT_S`` at most; a document still missing after that
        is taken as gone (a purge between the feed and the read)."""
        found: dict[str, Doc] = {}
        earlier: dict[str, Doc] = {}
        pauses = stale_read_pauses()
        waited = 0.0
        while True:
            ids = list(wanted)
            rows = [row for start in range(0, len(ids), 1000)
                    for row in self.couch.all_docs(self.db, ids[start : start + 1000], include_docs=True)]
            read = sort_reads(rows, wanted)
            found.update(read.found)
            earlier.update(read.earlier)
            if not read.stale:
                return list(found.values())
            pause = next(pauses, None)
            if pause is None:
                log_event(log, "read model: changes not readable", logging.WARNING, db=self.db,
                          ids=sorted(read.stale)[:10], count=len(read.stale), waited_s=round(waited, 2))
                found.update({i: earlier.get(i) or {"_id": i, "_deleted": True} for i in read.stale})
                return list(found.values())
            time.sleep(pause)
            waited += pause
            wanted = read.stale

    def remember(self, docs: Iterable[Doc]) -> None:
        """What the worker has just written (bodies with the revisions of the ``_bulk_docs`` answers): in the
        index at once, before the feed brings it. Callable from any thread (an activation's writers call it
        right after their ``_bulk_docs``); a revision the feed brought in already, or a later one, is kept."""
        self._thread_store().apply(docs, newer_only=True)


@dataclass
class Reads:
    found: dict[str, Doc] = field(default_factory=dict)  # at the revision wanted or later, or deleted
    earlier: dict[str, Doc] = field(default_factory=dict)  # at an earlier revision than wanted
    stale: dict[str, int] = field(default_factory=dict)  # read again: missing, or earlier than wanted


def sort_reads(rows: list[dict[str, Any]], wanted: dict[str, int]) -> Reads:
    """``_all_docs?keys=&include_docs=true`` rows sorted by what :meth:`ReadModel._read` makes of them, given the
    lowest revision generation wanted of each id: a document at that generation or later, or deleted, is
    found; one at an earlier generation, or "not_found" (the quorum has yet to take a write the feed listed),
    is read again."""
    out = Reads()
    for row in rows:
        doc_id = str(row.get("key", ""))
        if doc_id not in wanted:
            continue
        doc, value = row.get("doc"), row.get("value") or {}
        if doc and generation(str(doc.get("_rev", ""))) >= wanted[doc_id]:
            out.found[doc_id] = doc
        elif doc:
            out.earlier[doc_id] = doc
            out.stale[doc_id] = wanted[doc_id]
        elif value.get("deleted"):
            out.found[doc_id] = {"_id": doc_id, "_deleted": True}
        else:
            out.stale[doc_id] = wanted[doc_id]
    return out
