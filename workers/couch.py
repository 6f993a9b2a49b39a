"""The one module that speaks HTTP to CouchDB (or the embedded PouchDB Server), on python-couchdb's HTTP layer.

- every request has a timeout; feeds have their own, client-side, because PouchDB Server ignores ``timeout``;
- transient failures (connection refused/reset/timed out, 5xx, 429) are retried a bounded number of times
  with exponential backoff, each attempt logged, the last error re-raised as our own exception;
- errors become :mod:`workers.errors` exceptions with one-line messages that never carry credentials;
- ``seq`` values are opaque: stored and passed back exactly as the server gave them;
- bulk reads (``_bulk_get``, falling back to ``_all_docs?keys=`` with ``open_revs`` where missing) and bulk
  writes (``_bulk_docs``).
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from couchdb import http as couch_http

from workers.errors import (
    Conflict,
    FieldsyncError,
    Forbidden,
    NotFound,
    ServerError,
    ServerUnreachable,
    Unauthorized,
)
from workers.logs import log_event
from workers.settings import Settings

log = logging.getLogger("fieldsync.couch")

Doc = dict[str, Any]
TRANSIENT_STATUS = {429, 500, 502, 503, 504}
SOCKET_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT, errno.ECONNABORTED}


class _NoCache:
    """python-couchdb caches GET bodies by ETag without bound; fieldsync reads fresh data."""

    def get(self, url: str) -> None:
        return None

    def put(self, url: str, response: Any) -> None:
        return None

    def remove(self, url: str) -> None:
        return None


def _session(timeout: float) -> couch_http.Session:
    # one immediate socket-level retry covers a keep-alive connection the server closed meanwhile
    session = couch_http.Session(timeout=timeout, retry_delays=[0])
    session.cache = _NoCache()
    return session


class _Transient(Exception):
    def __init__(self, error: FieldsyncError) -> None:
        super().__init__(str(error))
        self.error = error


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


COUCHDB = "couchdb"
POUCHDB_SERVER = "pouchdb-server"
UNKNOWN_SERVER = "unknown"

# feature -> the kinds of server that have it. PouchDB Server 4.2 has no ``_db_updates`` and no ``_purge``, and
# ignores ``startkey_docid`` on views (a page starting at a key always starts at that key's first row).
FEATURES: dict[str, frozenset[str]] = {
    "purge": frozenset({COUCHDB}),
    "db_updates": frozenset({COUCHDB}),
    "startkey_docid": frozenset({COUCHDB}),
    "bulk_get": frozenset({COUCHDB, POUCHDB_SERVER, UNKNOWN_SERVER}),  # tried; off once it answers 404
}


def _encode_params(params: dict[str, Any] | None) -> str:
    if not params:
        return ""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if key == "open_revs" and value == "all":
            pairs.append((key, "all"))  # the one bare word: CouchDB refuses a quoted "all" (400)
        elif key in ("key", "keys", "startkey", "endkey", "start_key", "end_key", "open_revs") or isinstance(
            value, bool | list | dict
        ):
            pairs.append((key, json.dumps(value, separators=(",", ":"))))
        else:
            pairs.append((key, str(value)))
    return "?" + urlencode(pairs) if pairs else ""


def _path(parts: Sequence[str]) -> str:
    out = []
    for part in parts:
        # design documents and _local documents keep their slash
        if part.startswith("_design/") or part.startswith("_local/"):
            head, _, tail = part.partition("/")
            out.append(f"{head}/{quote(tail, safe='')}")
        else:
            out.append(quote(part, safe=""))
    return "/".join(out)


class Couch:
    """A CouchDB server, as one user (usually the admin)."""

    def __init__(
        self,
        url: str,
        credentials: tuple[str, str] | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.25,
    ) -> None:
        self.url = url.rstrip("/")
        self.credentials = credentials
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._session = _session(timeout)
        self._features: dict[str, bool] = {}
        self._server_info: Doc | None = None

    def clone(self) -> Couch:
        """The same server and user on a connection pool of its own (for another thread)."""
        return Couch(self.url, self.credentials, timeout=self.timeout, retries=self.retries, backoff=self.backoff)

    @classmethod
    def from_settings(cls, settings: Settings) -> Couch:
        return cls(
            settings.couch_url,
            settings.credentials,
            timeout=settings.http_timeout,
            retries=settings.http_retries,
        )

    def as_user(self, name: str, password: str) -> Couch:
        """The same server, seen by another account."""
        return Couch(self.url, (name, password), timeout=self.timeout, retries=self.retries, backoff=self.backoff)

    @property
    def user(self) -> str | None:
        return self.credentials[0] if self.credentials else None

    # ------------------------------------------------------------------ the request, retried and translated

    def request(
        self,
        method: str,
        *path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> Any:
        url = f"{self.url}/{_path(path)}{_encode_params(params)}"
        what = f"{method} /{'/'.join(path)}"
        attempts = (self.retries if retries is None else retries) + 1
        for attempt in range(1, attempts + 1):
            try:
                return self._once(method, url, body, what, timeout)
            except _Transient as transient:
                if attempt >= attempts:
                    raise transient.error from None
                delay = self.backoff * (2 ** (attempt - 1))
                log_event(
                    log, "retry", logging.INFO, request=what, attempt=attempt, of=attempts,
                    wait_s=round(delay, 2), error=str(transient.error),
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _once(self, method: str, url: str, body: Any, what: str, timeout: float | None) -> Any:
        session = self._session
        if timeout is not None and timeout != self.timeout:
            session = _session(timeout)
        try:
            _status, _headers, data = session.request(method, url, body=body, credentials=self.credentials)
        except couch_http.Unauthorized as exc:
            raise Unauthorized(f"{what}: unauthorized ({_reason(exc)}): check the user name and password") from None
        except couch_http.Forbidden as exc:
            raise Forbidden(f"{what}: forbidden ({_reason(exc)})") from None
        except couch_http.ResourceNotFound as exc:
            raise NotFound(f"{what}: not found ({_reason(exc)})") from None
        except (couch_http.ResourceConflict, couch_http.PreconditionFailed) as exc:
            raise Conflict(f"{what}: conflict ({_reason(exc)})") from None
        except couch_http.ServerError as exc:
            status, reason = _server_error(exc)
            error = ServerError(f"{what}: server error {status} ({reason})", status)
            if status in TRANSIENT_STATUS:
                raise _Transient(error) from None
            raise error from None
        except TimeoutError:
            raise _Transient(ServerUnreachable(f"{what}: {self.url} did not answer within the timeout")) from None
        except OSError as exc:
            code = exc.args[0] if exc.args else None
            message = f"{what}: cannot reach {self.url} ({exc.strerror or exc.__class__.__name__})"
            if code in SOCKET_ERRNOS or isinstance(exc, ConnectionError | socket.gaierror):
                raise _Transient(ServerUnreachable(message)) from None
            raise ServerUnreachable(message) from None
        if data is None:
            return None
        raw = data.read()
        if hasattr(data, "close"):
            data.close()
        if not raw:
            return None
        return json.loads(raw)

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
        from ``GET /``, asked once per client."""
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
        """Whether the server has ``feature`` (see ``FEATURES``: ``purge``, ``db_updates``, ``startkey_docid``,
        ``bulk_get``), by the kind of server ``GET /`` says it is; a feature found missing at run time (an
        endpoint answering 404 or 501) stays off for this client."""
        if feature not in FEATURES:
            raise ValueError(f"unknown feature {feature!r} (known: {', '.join(sorted(FEATURES))})")
        if feature not in self._features:
            self._features[feature] = self.server_kind() in FEATURES[feature]
        return self._features[feature]

    def _info(self) -> Doc:
        if self._server_info is None:
            self._server_info = self.server_info()
        return self._server_info

    # ------------------------------------------------------------------ databases

    def db_info(self, db: str) -> Doc | None:
        try:
            result: Doc = self.request("GET", db)
            return result
        except NotFound:
            return None

    def create_db(self, db: str) -> bool:
        """Create ``db``; False when it existed already."""
        try:
            self.request("PUT", db)
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
        return list(result or [])

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
        if self.supports("bulk_get"):
            try:
                result = self.request(
                    "POST", db, "_bulk_get", body={"docs": [{"id": i, "rev": r} for i, r in refs]},
                    params={"revs": revs} if revs else None,
                )
                docs: list[Doc] = []
                for item in result.get("results", []):
                    for entry in item.get("docs", []):
                        if "ok" in entry:
                            docs.append(entry["ok"])
                return docs
            except (NotFound, ServerError):
                self._features["bulk_get"] = False
        docs = []
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
    ) -> ChangesPage:
        """One page of ``_changes``. ``longpoll=seconds`` waits for the next change, client-side bounded."""
        params: dict[str, Any] = {"since": since, "limit": limit}
        if include_docs:
            params["include_docs"] = True
        if conflicts:
            params["conflicts"] = True
        if style:
            params["style"] = style
        if longpoll is not None:
            params["feed"] = "longpoll"
            params["timeout"] = int(longpoll * 1000)
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
        return self.get(db, f"_local/{name}")

    def put_local(self, db: str, name: str, body: Doc, attempts: int = 5) -> None:
        """Write a ``_local`` document (never replicated) over whatever revision is there; when another process
        writes it at the same moment, the last write wins."""
        doc = dict(body)
        doc["_id"] = f"_local/{name}"
        for attempt in range(attempts):
            current = self.get(db, doc["_id"])
            if current is not None:
                doc["_rev"] = current["_rev"]
            else:
                doc.pop("_rev", None)
            try:
                self.request("PUT", db, doc["_id"], body=doc)
                return
            except Conflict:
                if attempt == attempts - 1:
                    raise

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
            try:
                self.request("POST", db, "_purge", body={d["_id"]: [d["_rev"]] for d in docs})
                return len(docs)
            except (ServerError, NotFound):
                self._features["purge"] = False
        tombstones = [{"_id": d["_id"], "_rev": d["_rev"], "_deleted": True} for d in docs]
        results = self.bulk_docs(db, tombstones)
        return sum(1 for r in results if not r.get("error"))


def _reason(exc: Exception) -> str:
    arg = exc.args[0] if exc.args else ""
    if isinstance(arg, tuple):
        return ": ".join(str(a) for a in arg if a)
    if isinstance(arg, bytes):
        return arg.decode("utf-8", "replace")[:200]
    return str(arg)[:200]


def _server_error(exc: couch_http.ServerError) -> tuple[int, str]:
    arg = exc.args[0] if exc.args else (500, "")
    if isinstance(arg, tuple) and len(arg) == 2:
        status, detail = arg
        if isinstance(detail, tuple):
            detail = ": ".join(str(d) for d in detail if d)
        elif isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        return int(status), str(detail)[:200]
    return 500, str(arg)[:200]
