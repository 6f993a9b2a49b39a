"""The plan worker's read model: its own index of the main database, on local disk (SQLite, standard library).

What it holds: every plan, location (jurisdictions and structures), client, task and event of the main
database, with its revision and its whole body (the evaluator reads any field of them), plus tagged keys
to find them by (``refs``; a CouchDB view, ``lookup/entities``, once served these reads):

| tag | k1 | k2 | id of |
| --- | --- | --- | --- |
| ``child`` | parent location | | a location under it |
| ``residence`` | structure | | a family living there |
| ``member`` | family | | a member of it |
| ``task-for`` | entity | | a task of that entity |
| ``task-group`` | jurisdiction (``groupIdentifier``) | plan | a task |
| ``event-entity`` / ``event-location`` | entity / location | | an event |
| ``plan`` | status | jurisdiction code | a plan |

and, in ``meta``, what it is an index of (the server, the database, and the database's incarnation: a
random id the worker keeps in the database's own ``_local`` document, so a database deleted and created again
under the same name is not mistaken for the old one) and the feed position it has read up to. A batch of
changes and that position are committed in one transaction: a kill leaves either both or neither.

This module is pure storage (no network): :mod:`workers.readmodel.feed` keeps it up to date from the feed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from workers.jsoncodec import dumps_text, loads

Doc = dict[str, Any]

INDEXED_TYPES = frozenset({"Feature", "Client", "Task", "Event", "Plan"})
# 2: no index of refs by document id (a document's old refs are derived from its old body instead); a file of
# another version is rebuilt. Changing what ``refs_of`` derives from a body also needs a new version: the refs a
# document had are found again by deriving them from the body it had.
SCHEMA_VERSION = "2"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (id TEXT PRIMARY KEY, rev TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refs (tag TEXT NOT NULL, k1 TEXT NOT NULL, k2 TEXT NOT NULL, id TEXT NOT NULL,
                                 PRIMARY KEY (tag, k1, k2, id)) WITHOUT ROWID;
"""
# pages of write-ahead log before SQLite copies them into the file (its default: 1,000). Each copy ends in two
# fsyncs; a batch of 500 new tasks writes 1-2 MiB of pages at random places of the B-trees, so with the default
# every second or third batch paid for them. At 10,000 pages (at most about 40 MiB of log on disk), recording the
# worker's own writes costs 60 us per task instead of 130 (a 200 MiB index, 500-task batches; session 10).
WAL_AUTOCHECKPOINT = 10_000
CHUNK = 500  # ids per IN (...) query (SQLite's default limit of host parameters is 999 on old builds)
# the tags whose refs have a k2 (the others' is always ""): only a read of these without a k2 must sort by id
# across k2 values, which SQLite does in a temporary B-tree holding the bodies. Every other read is ordered by
# the primary key as it is: 4.5 us a document read instead of 7.4 for a structure's (session 19)
K2_TAGS = frozenset({"task-group", "plan"})


def generation(rev: str) -> int:
    head = rev.partition("-")[0]
    return int(head) if head.isdigit() else 0


class CorruptIndex(Exception):
    """The index file cannot be used (not SQLite, damaged, another schema): it is rebuilt."""


def refs_of(doc: Doc) -> list[tuple[str, str, str]]:
    """The tagged keys of one document (see the table above)."""
    kind = doc.get("type")
    out: list[tuple[str, str, str]] = []
    if kind == "Feature":
        parent = (doc.get("properties") or {}).get("parentId")
        if isinstance(parent, str) and parent:
            out.append(("child", parent, ""))
    elif kind == "Client":
        rel = doc.get("relationships") or {}
        home = (doc.get("attributes") or {}).get("residence")
        if isinstance(home, str) and home and (doc.get("lastName") == "Family" or rel.get("family_head")):
            out.append(("residence", home, ""))
        for family in rel.get("family") or []:
            if isinstance(family, str) and family and family != doc.get("baseEntityId"):
                out.append(("member", family, ""))
    elif kind == "Task":
        entity = doc.get("for")
        if isinstance(entity, str) and entity:
            out.append(("task-for", entity, ""))
        out.append(("task-group", str(doc.get("groupIdentifier") or ""), str(doc.get("planIdentifier") or "")))
    elif kind == "Event":
        out.append(("event-entity", str(doc.get("baseEntityId") or ""), ""))
        location = doc.get("locationId")
        if isinstance(location, str) and location:
            out.append(("event-location", location, ""))
    elif kind == "Plan":
        for j in doc.get("jurisdiction") or []:
            if isinstance(j, dict) and j.get("code"):
                out.append(("plan", str(doc.get("status") or ""), str(j["code"])))
    return list(dict.fromkeys(out))


class Store:
    """One SQLite file. Every write method commits (or is inside :meth:`batch`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._depth = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
            self._db.executescript(_SCHEMA)
            version = self.meta("schema")
            if version is None:
                self.set_meta({"schema": SCHEMA_VERSION})
            elif version != SCHEMA_VERSION:
                raise CorruptIndex(f"{path}: schema {version}, not {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise CorruptIndex(f"{path}: {exc}") from exc
        path.chmod(0o600)

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def peek(path: Path) -> dict[str, Any] | None:
        """What ``fieldsync status`` shows of an index file, read-only (None when there is none or it is
        unreadable): its position, how many documents, its size on disk."""
        if not path.is_file():
            return None
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                seq = db.execute("SELECT v FROM meta WHERE k = 'seq'").fetchone()
                docs = db.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
            finally:
                db.close()
        except sqlite3.DatabaseError:
            return None
        size = sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{path}{s}").exists())
        return {"path": str(path), "seq": json.loads(seq[0]) if seq else 0, "docs": int(docs), "bytes": size}

    @staticmethod
    def discard(path: Path) -> None:
        """Remove an index file and its write-ahead log (before a rebuild)."""
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction around several writes (nested calls join the outer one)."""
        if self._depth == 0:
            self._db.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self._db.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self._db.execute("COMMIT")

    # ------------------------------------------------------------------ meta

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, values: dict[str, str]) -> None:
        with self.batch():
            self._db.executemany("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", list(values.items()))

    @property
    def seq(self) -> Any:
        raw = self.meta("seq")
        return 0 if raw is None else json.loads(raw)

    # ------------------------------------------------------------------ writes

    def apply(self, docs: Iterable[Doc], seq: Any = None, *, newer_only: bool = False) -> int:
        """Put or remove documents (a deleted one, or one of a type not indexed, is removed) and, in the same
        transaction, record the feed position ``seq`` (when given). Returns how many documents it stored.

        ``newer_only``: what the worker has just written (:meth:`ReadModel.remember`), which the feed may have
        brought in already, at that revision or a later one: a document is left as it is when the index holds
        a revision of the same or a higher generation, so an answer that arrives late never rolls it back."""
        latest: dict[str, Doc] = {}
        for doc in docs:
            doc_id = str(doc.get("_id", ""))
            if doc_id and not doc_id.startswith("_"):
                latest[doc_id] = doc
        with self.batch():
            held = self.revs(list(latest)) if newer_only else None
            if held is not None:
                latest = {i: d for i, d in latest.items()
                          if i not in held or generation(held[i]) < generation(str(d.get("_rev", "")))}
            ids = list(latest) if held is None else [i for i in latest if i in held]  # refs to drop first
            kept = [d for d in latest.values() if not d.get("_deleted") and d.get("type") in INDEXED_TYPES]
            gone = [(i,) for i, d in latest.items() if d.get("_deleted") or d.get("type") not in INDEXED_TYPES]
            dropped = [(*ref, doc_id) for doc_id, body in self.bodies(ids) for ref in refs_of(body)]
            self._db.executemany("DELETE FROM refs WHERE tag = ? AND k1 = ? AND k2 = ? AND id = ?", dropped)
            self._db.executemany("DELETE FROM docs WHERE id = ?", gone)
            self._db.executemany(
                "INSERT OR REPLACE INTO docs (id, rev, type, body) VALUES (?, ?, ?, ?)",
                [(str(d["_id"]), str(d.get("_rev", "")), str(d["type"]), dumps_text(d))
                 for d in kept])
            self._db.executemany("INSERT OR IGNORE INTO refs (tag, k1, k2, id) VALUES (?, ?, ?, ?)",
                                 [(tag, k1, k2, str(d["_id"])) for d in kept for tag, k1, k2 in refs_of(d)])
            if seq is not None:
                self._db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('seq', ?)", (json.dumps(seq),))
        return len(kept)

    def clear(self) -> None:
        """Forget every document and the feed position (before a snapshot fills the index again)."""
        with self.batch():
            self._db.execute("DELETE FROM refs")
            self._db.execute("DELETE FROM docs")
            self._db.execute("DELETE FROM meta WHERE k = 'seq'")

    # ------------------------------------------------------------------ reads

    def revs(self, ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for start in range(0, len(ids), CHUNK):
            part = list(ids[start : start + CHUNK])
            marks = ",".join("?" * len(part))
            out.update((str(i), str(r)) for i, r in
                       self._db.execute(f"SELECT id, rev FROM docs WHERE id IN ({marks})", part))
        return out

    def bodies(self, ids: Sequence[str]) -> list[tuple[str, Doc]]:
        """(id, body) of the documents among ``ids`` that the index holds (a new one has no refs to drop)."""
        out: list[tuple[str, Doc]] = []
        for start in range(0, len(ids), CHUNK):
            part = list(ids[start : start + CHUNK])
            marks = ",".join("?" * len(part))
            rows = self._db.execute(f"SELECT id, body FROM docs WHERE id IN ({marks})", part).fetchall()
            out.extend((str(doc_id), loads(body)) for doc_id, body in rows)
        return out

    def get(self, doc_id: str, doc_type: str | None = None) -> Doc | None:
        row = self._db.execute("SELECT type, body FROM docs WHERE id = ?", (doc_id,)).fetchone()
        if row is None or (doc_type is not None and row[0] != doc_type):
            return None
        doc: Doc = loads(row[1])
        return doc

    def by_key(self, tag: str, k1s: Sequence[str], k2: str | None = None) -> dict[str, list[Doc]]:
        """Documents under (tag, k1[, k2]) for each k1, in id order."""
        out: dict[str, list[Doc]] = {k: [] for k in k1s}
        unique = list(dict.fromkeys(k1s))
        for start in range(0, len(unique), CHUNK):
            part = unique[start : start + CHUNK]
            marks = ",".join("?" * len(part))
            order = "r.k1, r.id" if k2 is None and tag in K2_TAGS else "r.k1, r.k2, r.id"  # the same order
            query = (f"SELECT r.k1, d.body FROM refs r JOIN docs d ON d.id = r.id WHERE r.tag = ? "
                     f"AND r.k1 IN ({marks})" + (" AND r.k2 = ?" if k2 is not None else "") + f" ORDER BY {order}")
            params: list[str] = [tag, *part, *([k2] if k2 is not None else [])]
            for k1, body in self._db.execute(query, params):
                out.setdefault(str(k1), []).append(loads(body))
        return out

    def keys_of(self, tag: str, k2: str | None = None) -> list[str]:
        """Every k1 under ``tag`` (and ``k2``), in order: e.g. the jurisdictions holding a plan's tasks."""
        query = ("SELECT DISTINCT k1 FROM refs WHERE tag = ?" + (" AND k2 = ?" if k2 is not None else "")
                 + " ORDER BY k1")
        return [str(k) for (k,) in self._db.execute(query, [tag, *([k2] if k2 is not None else [])])]

    def any_under(self, tag: str, k1: str) -> bool:
        return self._db.execute("SELECT 1 FROM refs WHERE tag = ? AND k1 = ? LIMIT 1", (tag, k1)).fetchone() is not None

    def count(self, doc_type: str | None = None) -> int:
        if doc_type is None:
            return int(self._db.execute("SELECT COUNT(*) FROM docs").fetchone()[0])
        return int(self._db.execute("SELECT COUNT(*) FROM docs WHERE type = ?", (doc_type,)).fetchone()[0])

    def size_bytes(self) -> int:
        return sum(Path(f"{self.path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{self.path}{s}").exists())
