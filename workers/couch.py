"""The CouchDB API fieldsync uses, on :mod:`workers.transport` (the only module that speaks HTTP).

- documents, bulk reads (``_bulk_get``, falling back to single reads where the server lacks it) and bulk writes
  (``_bulk_docs``), views paged in bounded memory, ``_changes`` pages, ``_local`` checkpoints, purge;
- ``seq`` values are opaque: stored and passed back exactly as the server gave them (on a cluster the same
  position reads differently from one request to the next, and any node takes any of them);
- ``supports(feature)`` asks the server about that feature itself, once per server; only an answer that says the
  endpoint is missing (400, 404, 501) turns a feature off, never a failure (5xx after retries).

A client may know several nodes of one cluster: requests fail over between them (:mod:`workers.nodes`).
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from workers.errors import Conflict, Forbidden, NotFound, ServerError, ServerUnreachable, Unauthorized
from workers.nodes import NodeList, RetryPolicy, is_unsupported
from workers.settings import Settings
from workers.transport import Transport

Doc = dict[str, Any]


@dataclass
class ChangesPage:
    """One page of a ``_changes`` feed."""

    results: list[dict[str, Any]]
    last_seq: Any
    pending: int | None = None


@dataclass
class WriteResult:
    ok: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def extend(self, other: WriteResult) -> None:
        """Add another write's answers to these."""
        self.ok += other.ok
        self.conflicts += other.conflicts
        self.errors += other.errors


COUCHDB = "couchdb"
POUCHDB_SERVER = "pouchdb-server"
UNKNOWN_SERVER = "unknown"

# The features a server may lack, each found out by asking the server (``Couch.supports``). PouchDB Server 4.2 has
# no ``_db_updates`` and no ``_purge``, and ignores ``startkey_docid`` on views.
FEATURES = ("purge", "db_updates", "startkey_docid", "bulk_get")


class _Facts:
    """What one server was found to be (``GET /``, its features), shared by every client of it (clones, users)."""

    def __init__(self) -> None:
        self.info: Doc | None = None
        self.features: dict[str, bool] = {}
        self.lock = threading.Lock()


def in_request_order(docs: Sequence[Doc], results: list[Doc]) -> list[Doc]:
    """``_bulk_docs`` answers in the order of the documents sent: CouchDB does, the embedded server (PouchDB
    Server) was seen answering ``[gone-2, gone-1, gone-0, kept]`` to ``[gone-0, gone-1, gone-2, kept]`` (about one
    request in 30, found by CI). Results are matched to the documents by id, in order for an id sent twice;
    documents sent without an id (the server names them) keep their place."""
    sent = [d.get("_id") for d in docs]
    if len(results) != len(docs) or all(r.get("id") == i for r, i in zip(results, sent, strict=True)):
        return results
    if None in sent or Counter(sent) != Counter(r.get("id") for r in results):
        return results
    by_id: dict[Any, deque[Doc]] = defaultdict(deque)
    for r in results:
        by_id[r.get("id")].append(r)
    return [by_id[i].popleft() for i in sent]


class Couch:
    """A CouchDB server (one node, or several nodes of one cluster), as one user (usually the admin)."""

    def __init__(
        self,
        url: str | Sequence[str],
        credentials: tuple[str, str] | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.25,
        home: int = 0,
        failback_after: float = 30.0,
        nodes: NodeList | None = None,
        facts: _Facts | None = None,
    ) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        self.nodes = nodes or NodeList(urls, home=home, failback_after=failback_after)
        self.credentials = credentials
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._transport = Transport(self.nodes, credentials, timeout=timeout, policy=RetryPolicy(retries, backoff))
        self._facts = facts or _Facts()
        # the revision of each _local document this client last read or wrote: put_local writes in one request
        self._local_revs: dict[tuple[str, str], str] = {}

    @property
    def url(self) -> str:
        """The home node's URL (without credentials): what this client asks first."""
        return self.nodes.home_url

    @property
    def urls(self) -> tuple[str, ...]:
        return self.nodes.urls

    def _sibling(self, credentials: tuple[str, str] | None) -> Couch:
        return Couch(self.urls, credentials, timeout=self.timeout, retries=self.retries, backoff=self.backoff,
                     nodes=self.nodes, facts=self._facts)

    def clone(self) -> Couch:
        """The same server and user on a connection pool of its own (for another thread); the nodes' health and
        the server's features are shared."""
        return self._sibling(self.credentials)

    @classmethod
    def from_settings(cls, settings: Settings) -> Couch:
        return cls(
            settings.couch_nodes,
            settings.credentials,
            timeout=settings.http_timeout,
            retries=settings.http_retries,
            home=settings.shard[0],
            failback_after=settings.failback_seconds,
        )

    def as_user(self, name: str, password: str) -> Couch:
        """The same server, seen by another account."""
        return self._sibling((name, password))

    @property
    def user(self) -> str | None:
        return self.credentials[0] if self.credentials else None

    def request(
        self,
        method: str,
        *path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> Any:
        """One request (``path`` parts are escaped), retried and failed over by the transport."""
        return self._transport.request(method, path, body=body, params=params, timeout=timeout, retries=retries)

    # ------------------------------------------------------------------ server

    def server_info(self) -> Doc:
        result: Doc = self.request("GET", "")
        return result

    def session(self) -> Doc:
        result: Doc = self.request("GET", "_session")
        return result

    def all_dbs(self) -> list[str]:
        result: list[str] = self.request("GET", "_all_dbs")
        return result

    def server_kind(self) -> str:
        """``couchdb`` (Apache CouchDB, or a server answering as it) or ``pouchdb-server`` (express-pouchdb),
        from ``GET /``, asked once per server."""
        info = self._info()
        if "express-pouchdb" in info:
            return POUCHDB_SERVER
        if "couchdb" in info:
            return COUCHDB
        return UNKNOWN_SERVER

    def describe(self) -> str:
        """The server in words, e.g. ``Apache CouchDB 3.5.0`` or ``PouchDB Server (express-pouchdb 4.2.0)``."""
        info = self._info()
        kind = self.server_kind()
        if kind == POUCHDB_SERVER:
            return f"PouchDB Server (express-pouchdb {info.get('version', '?')})"
        vendor = (info.get("vendor") or {}).get("name") or "CouchDB"
        name = "Apache CouchDB" if vendor == "The Apache Software Foundation" else f"CouchDB ({vendor})"
        return f"{name} {info.get('version', '?')}"

    def supports(self, feature: str) -> bool:
        """Whether the server has ``feature`` (``purge``, ``db_updates``, ``startkey_docid``, ``bulk_get``), found
        out by asking the server for that feature itself, once per server (see ``_probe``). A failure to ask
        (unreachable, 5xx after retries) is raised and nothing is remembered; only an answer that says the
        endpoint is missing (400, 404, 501) makes it False."""
        if feature not in FEATURES:
            raise ValueError(f"unknown feature {feature!r} (known: {', '.join(sorted(FEATURES))})")
        known = self._facts.features.get(feature)
        if known is not None:
            return known
        found = self._probe(feature)
        with self._facts.lock:
            self._facts.features.setdefault(feature, found)
            return self._facts.features[feature]

    def _probe(self, feature: str) -> bool:
        """Ask the server for ``feature`` with a request that changes nothing: an empty ``_purge`` and a
        ``_bulk_get`` of a missing id on ``_users`` (every server has it), one ``_db_updates`` row (a 404 for its
        missing ``_global_changes`` database still says the endpoint is there), and for
        ``startkey_docid`` a view page in a scratch database (created and removed here) whose rows share one key.
        A client that may not ask (401/403: not an admin) goes by the kind of server instead."""
        try:
            if feature == "purge":
                self.request("POST", "_users", "_purge", body={})
            elif feature == "bulk_get":
                self.request("POST", "_users", "_bulk_get", body={"docs": [{"id": "fieldsync-probe"}]})
            elif feature == "db_updates":
                try:
                    self.request("GET", "_db_updates", params={"limit": 1, "timeout": 0})
                except NotFound as missing:
                    # the endpoint is there, its _global_changes database not yet (``fieldsync init`` makes it)
                    if "does not exist" not in str(missing):
                        raise
            else:
                return self._probe_startkey_docid()
        except (NotFound, ServerError) as exc:
            if is_unsupported(404 if isinstance(exc, NotFound) else exc.status):
                return False
            raise
        except (Unauthorized, Forbidden):
            return self.server_kind() == COUCHDB or feature == "bulk_get"
        return True

    def _probe_startkey_docid(self) -> bool:
        db = f"fieldsync-probe-{uuid.uuid4().hex[:12]}"
        self.request("PUT", db)
        try:
            self.request("PUT", db, "_design/p", body={"views": {"k": {"map": "function (doc) { emit(1, 1); }"}}})
            self.bulk_docs(db, [{"_id": "a"}, {"_id": "b"}])
            rows = self.view(db, "p", "k", startkey=1, startkey_docid="b")
            return [row["id"] for row in rows] == ["b"]
        finally:
            self.delete_db(db)

    def _info(self) -> Doc:
        if self._facts.info is None:
            self._facts.info = self.server_info()
        return self._facts.info

    # ------------------------------------------------------------------ databases

    def db_info(self, db: str) -> Doc | None:
        try:
            result: Doc = self.request("GET", db)
            return result
        except NotFound:
            return None

    def create_db(self, db: str, shards: int | None = None) -> bool:
        """Create ``db``; False when it existed already. ``shards``: its number of shards (``q``) on Apache
        CouchDB (a server without shards, PouchDB Server, is not asked); None or 0: the server's default."""
        params = {"q": shards} if shards and self.server_kind() == COUCHDB else None
        try:
            self.request("PUT", db, params=params)
            return True
        except Conflict:
            return False

    def delete_db(self, db: str) -> bool:
        try:
            self.request("DELETE", db)
            return True
        except NotFound:
            return False

    def get_security(self, db: str) -> Doc:
        result: Doc = self.request("GET", db, "_security") or {}
        return result

    def put_security(self, db: str, security: Doc) -> None:
        self.request("PUT", db, "_security", body=security)

    # ------------------------------------------------------------------ documents

    def get(self, db: str, doc_id: str, **params: Any) -> Doc | None:
        try:
            result: Doc = self.request("GET", db, doc_id, params=params)
            return result
        except NotFound:
            return None

    def put(self, db: str, doc: Doc) -> str:
        """Write one document (``_id`` required); returns the new revision and sets ``doc['_rev']``."""
        result = self.request("PUT", db, doc["_id"], body=doc)
        doc["_rev"] = result["rev"]
        return str(result["rev"])

    def delete(self, db: str, doc_id: str, rev: str) -> None:
        self.request("DELETE", db, doc_id, params={"rev": rev})

    def bulk_docs(self, db: str, docs: list[Doc], *, new_edits: bool = True) -> list[Doc]:
        """One ``_bulk_docs`` request; returns the per-document results (``ok``/``error``)."""
        if not docs:
            return []
        body: Doc = {"docs": docs}
        if not new_edits:
            body["new_edits"] = False
        result = self.request("POST", db, "_bulk_docs", body=body)
        return in_request_order(docs, list(result or []))

    def save_many(self, db: str, docs: list[Doc], *, chunk: int = 500) -> WriteResult:
        """Write documents in chunks, sorting the answers into ok, conflicts and other errors."""
        out = WriteResult()
        for start in range(0, len(docs), chunk):
            part = docs[start : start + chunk]
            for doc, res in zip(part, self.bulk_docs(db, part), strict=False):
                if res.get("error") == "conflict":
                    out.conflicts.append(str(res.get("id", doc.get("_id"))))
                elif res.get("error"):
                    out.errors.append(res)
                else:
                    doc["_rev"] = res.get("rev", doc.get("_rev"))
                    out.ok.append(res)
        return out

    def all_docs(
        self, db: str, keys: Sequence[str] | None = None, *, include_docs: bool = True, **params: Any
    ) -> list[Doc]:
        """Rows of ``_all_docs``; with ``keys`` one POST however many (missing keys answer ``error``)."""
        query = {"include_docs": include_docs, **params}
        if keys is not None:
            if not keys:
                return []
            result = self.request("POST", db, "_all_docs", body={"keys": list(keys)}, params=query)
        else:
            result = self.request("GET", db, "_all_docs", params=query)
        return list(result.get("rows", []))

    def get_many(self, db: str, ids: Sequence[str], **params: Any) -> dict[str, Doc]:
        """The current winning revisions of ``ids`` that exist (deleted ones left out), keyed by id."""
        out: dict[str, Doc] = {}
        for start in range(0, len(ids), 1000):
            for row in self.all_docs(db, ids[start : start + 1000], include_docs=True, **params):
                doc = row.get("doc")
                if doc:
                    out[doc["_id"]] = doc
        return out

    def bulk_get(self, db: str, refs: Sequence[tuple[str, str]], *, revs: bool = False) -> list[Doc]:
        """Specific revisions (id, rev) in one request; deleted revisions come back with ``_deleted``."""
        if not refs:
            return []
        docs: list[Doc] = []
        if self.supports("bulk_get"):
            result = self.request(
                "POST", db, "_bulk_get", body={"docs": [{"id": i, "rev": r} for i, r in refs]},
                params={"revs": revs} if revs else None,
            )
            for item in result.get("results", []):
                for entry in item.get("docs", []):
                    if "ok" in entry:
                        docs.append(entry["ok"])
            return docs
        for doc_id, rev in refs:
            found = self.get(db, doc_id, rev=rev, revs=revs or None)
            if found is not None:
                docs.append(found)
        return docs

    def revs_diff(self, db: str, leaves: dict[str, list[str]]) -> dict[str, list[str]]:
        """The revisions of ``leaves`` (id -> revs) that ``db`` lacks, by id (the replication protocol)."""
        if not leaves:
            return {}
        result = self.request("POST", db, "_revs_diff", body=leaves) or {}
        return {str(doc_id): [str(r) for r in entry.get("missing", [])] for doc_id, entry in result.items()
                if entry.get("missing")}

    def open_revs(self, db: str, doc_id: str, revs: Sequence[str] | None = None) -> list[Doc]:
        """Every leaf revision of a document (``open_revs=all``), or the given ones that exist; none for a
        document the database has never had (or has purged)."""
        try:
            result = self.request(
                "GET", db, doc_id, params={"open_revs": list(revs) if revs else "all", "revs": True},
            )
        except NotFound:
            return []
        return [entry["ok"] for entry in result if "ok" in entry]

    # ------------------------------------------------------------------ views

    def view(self, db: str, ddoc: str, view: str, *, keys: Sequence[Any] | None = None, **params: Any) -> list[Doc]:
        path = (db, f"_design/{ddoc}", "_view", view)
        if keys is not None:
            if not keys:
                return []
            result = self.request("POST", *path, body={"keys": list(keys)}, params=params)
        else:
            result = self.request("GET", *path, params=params)
        return list(result.get("rows", []))

    def iter_view(self, db: str, ddoc: str, view: str, *, page: int = 1000, **params: Any) -> Iterator[Doc]:
        """Every row of a view, in pages (bounded memory).

        Where the server honours ``startkey_docid`` (CouchDB), a page starts at the last row seen (key and
        document id) and drops that one row: no ``skip``, whose cost grows with its size on CouchDB. PouchDB
        Server ignores ``startkey_docid`` (paging by it would return the same page forever once more than a page
        of rows share one key), so there a page starts at the last key seen and skips the rows of that key
        already returned. Not for ``descending`` or reduced views."""
        params = dict(params)
        params.pop("limit", None)
        params.pop("skip", None)
        if self.supports("startkey_docid"):
            yield from self._iter_view_by_docid(db, ddoc, view, page, params)
            return
        last_key: Any = None
        same_key = 0  # rows already returned whose key is ``last_key``
        first = True
        while True:
            extra = {} if first else {"startkey": last_key, "skip": same_key}
            rows = self.view(db, ddoc, view, limit=page, **{**params, **extra})
            first = False
            for row in rows:
                if row["key"] == last_key:
                    same_key += 1
                else:
                    last_key, same_key = row["key"], 1
                yield row
            if len(rows) < page:
                return

    def _iter_view_by_docid(self, db: str, ddoc: str, view: str, page: int, params: dict[str, Any]
                            ) -> Iterator[Doc]:
        for name in ("startkey_docid", "start_key_doc_id"):
            params.pop(name, None)
        extra: dict[str, Any] = {}
        while True:
            rows = self.view(db, ddoc, view, limit=page, **{**params, **extra})
            yield from rows
            if len(rows) < page:
                return
            last = rows[-1]
            # a document may emit one key more than once: skip exactly the rows of (key, id) already returned
            seen = sum(1 for row in rows if row["key"] == last["key"] and row.get("id") == last.get("id"))
            params.pop("start_key", None)
            extra = {"startkey": last["key"], "startkey_docid": last["id"], "skip": seen}

    # ------------------------------------------------------------------ feeds and checkpoints

    def changes(
        self,
        db: str,
        since: Any = 0,
        *,
        limit: int = 200,
        include_docs: bool = True,
        conflicts: bool = False,
        style: str | None = None,
        longpoll: float | None = None,
        every_seq: bool = False,
    ) -> ChangesPage:
        """One page of ``_changes``. ``longpoll=seconds`` waits for the next change, client-side bounded.

        Only the page's first change carries its sequence unless ``every_seq`` (``seq_interval``): CouchDB 3 encodes
        each row's opaque sequence from every shard's position, which was 60% of its CPU for a page without
        documents (67-70 us a change against 27-32 us, 68,000 changes, session 17); the readers go by the page's
        ``last_seq``. PouchDB Server ignores the parameter (its sequences are integers)."""
        params: dict[str, Any] = {"since": since, "limit": limit}
        if not every_seq and limit > 1:
            params["seq_interval"] = limit
        if include_docs:
            params["include_docs"] = True
        if conflicts:
            params["conflicts"] = True
        if style:
            params["style"] = style
        if longpoll is not None:
            params["feed"] = "longpoll"
            params["timeout"] = int(longpoll * 1000)
            # no heartbeat before the client gives up: PouchDB Server otherwise sends one every 6 s (even with
            # heartbeat=false), each of which restarts the socket timeout below, so the wait never ended
            params["heartbeat"] = int((longpoll + 60) * 1000)
            try:
                result = self.request("GET", db, "_changes", params=params, timeout=longpoll + 5, retries=0)
            except ServerUnreachable:
                # PouchDB Server ignores ``timeout`` and holds the request until a change: our socket
                # timeout ends the wait, which means "nothing new" unless the server is really gone.
                self.server_info()
                return ChangesPage([], since, 0)
        else:
            result = self.request("GET", db, "_changes", params=params)
        return ChangesPage(list(result.get("results", [])), result.get("last_seq", since), result.get("pending"))

    def db_updates(self, since: Any = "now", *, longpoll: float | None = None) -> ChangesPage:
        """One page of ``_db_updates`` (CouchDB, once its ``_global_changes`` database exists): each result names
        a database (``db_name``) and what happened to it (``type``: created, updated, deleted). ``since="now"``
        starts at the present; ``longpoll=seconds`` waits for the next update, client-side bounded."""
        params: dict[str, Any] = {"since": since}
        if longpoll is None:
            result = self.request("GET", "_db_updates", params=params)
        else:
            params.update(feed="longpoll", timeout=int(longpoll * 1000))
            result = self.request("GET", "_db_updates", params=params, timeout=longpoll + 5, retries=0)
        return ChangesPage(list(result.get("results", [])), result.get("last_seq", since))

    def get_local(self, db: str, name: str) -> Doc | None:
        found = self.get(db, f"_local/{name}")
        if found is not None and found.get("_rev"):
            self._local_revs[(db, name)] = str(found["_rev"])
        return found

    def put_local(self, db: str, name: str, body: Doc, attempts: int = 5) -> None:
        """Write a ``_local`` document (never replicated) over whatever revision is there; when another process
        writes it at the same moment, the last write wins. One request when this client knows the revision
        there (it read or wrote the document last); a conflict reads the revision and tries again."""
        doc = dict(body)
        doc["_id"] = f"_local/{name}"
        known = self._local_revs.get((db, name))
        for attempt in range(attempts):
            if known is None or attempt > 0:
                current = self.get(db, doc["_id"])
                known = str(current["_rev"]) if current is not None else None
            if known is not None:
                doc["_rev"] = known
            else:
                doc.pop("_rev", None)
            try:
                result = self.request("PUT", db, doc["_id"], body=doc)
            except (Conflict, NotFound) as exc:
                # a revision this client no longer holds (another writer, a database made again): read it
                self._local_revs.pop((db, name), None)
                if attempt == attempts - 1 or (isinstance(exc, NotFound) and "_rev" not in doc):
                    raise
                continue
            rev = result.get("rev") if isinstance(result, dict) else None
            if rev:
                self._local_revs[(db, name)] = str(rev)
            else:
                self._local_revs.pop((db, name), None)
            return

    def update_seq(self, db: str) -> Any:
        info = self.db_info(db)
        return info.get("update_seq") if info else None

    # ------------------------------------------------------------------ removal

    def purge_or_delete(self, db: str, docs: Iterable[Doc]) -> int:
        """Remove documents: ``_purge`` where the server supports it, deletion otherwise. Returns the count."""
        docs = [d for d in docs if d.get("_rev")]
        if not docs:
            return 0
        if self.supports("purge"):
            self.request("POST", db, "_purge", body={d["_id"]: [d["_rev"]] for d in docs})
            return len(docs)
        tombstones = [{"_id": d["_id"], "_rev": d["_rev"], "_deleted": True} for d in docs]
        results = self.bulk_docs(db, tombstones)
        removed = sum(1 for r in results if not r.get("error"))
        conflicted = [str(r.get("id")) for r in results if r.get("error") == "conflict" and r.get("id")]
        if conflicted:
            # a request retried after a timeout or a reset connection finds what its first attempt deleted: a
            # conflict on a document that is now deleted (or gone) was removed all the same
            rows = self.all_docs(db, conflicted, include_docs=False)
            removed += sum(1 for row in rows
                           if row.get("error") == "not_found" or (row.get("value") or {}).get("deleted"))
        return removed
