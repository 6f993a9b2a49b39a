"""HTTP to CouchDB nodes: one session, one request with a timeout, bounded retries, failover across the nodes of a
cluster, and every error translated into a :mod:`workers.errors` exception (on python-couchdb's HTTP layer).

- every request has a timeout; feeds pass their own, client-side, because PouchDB Server ignores ``timeout``;
- transient failures (connection refused/reset/timed out, 5xx, 429) are retried a bounded number of times; the node
  that failed is marked down and the next attempt goes to another node at once (:mod:`workers.nodes` chooses),
  with exponential backoff once every node has failed; each attempt, failover and fail-back is logged;
- the last error is raised as our own exception, with a one-line message that never carries credentials.

The CouchDB API on top of it is :class:`workers.couch.Couch`.
"""

from __future__ import annotations

import errno
import http.client
import json
import logging
import socket
import time
from collections.abc import Sequence
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
from workers.jsoncodec import dumps, loads
from workers.logs import log_event
from workers.nodes import NodeList, RetryPolicy, Switch

log = logging.getLogger("fieldsync.couch")

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


def encode_params(params: dict[str, Any] | None) -> str:
    """A query string: JSON for keys and structured values, the bare word for ``open_revs=all``."""
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


def encode_path(parts: Sequence[str]) -> str:
    out = []
    for part in parts:
        # design documents and _local documents keep their slash
        if part.startswith("_design/") or part.startswith("_local/"):
            head, _, tail = part.partition("/")
            out.append(f"{head}/{quote(tail, safe='')}")
        else:
            out.append(quote(part, safe=""))
    return "/".join(out)


class Transport:
    """Requests to the nodes of one server (a single node, or a cluster's nodes), as one user."""

    def __init__(self, nodes: NodeList, credentials: tuple[str, str] | None, *, timeout: float,
                 policy: RetryPolicy) -> None:
        self.nodes = nodes
        self.credentials = credentials
        self.timeout = timeout
        self.policy = policy
        self._session = _session(timeout)

    def request(self, method: str, path: Sequence[str], *, body: Any = None, params: dict[str, Any] | None = None,
                timeout: float | None = None, retries: int | None = None) -> Any:
        """One request, retried and failed over; the answer's JSON (None for an empty body)."""
        tail = f"{encode_path(path)}{encode_params(params)}"
        what = f"{method} /{'/'.join(path)}"
        attempts = self.policy.attempts(len(self.nodes), retries)
        index = self.nodes.current()
        for attempt in range(1, attempts + 1):
            base = self.nodes.urls[index]
            try:
                result = self._once(method, f"{base}/{tail}", base, body, what, timeout)
            except _Transient as transient:
                index, switch = self.nodes.failed(index)
                self._note(switch, what, transient.error)
                if attempt >= attempts:
                    raise transient.error from None
                delay = self.policy.wait(attempt, len(self.nodes))
                log_event(log, "retry", logging.INFO, request=what, node=base, attempt=attempt, of=attempts,
                          wait_s=round(delay, 2), error=str(transient.error))
                if delay:
                    time.sleep(delay)
                continue
            self._note(self.nodes.succeeded(index), what, None)
            return result
        raise AssertionError("unreachable")

    def _note(self, switch: Switch | None, what: str, error: FieldsyncError | None) -> None:
        if switch is None:
            return
        if switch.kind == "failover":
            log_event(log, "failover", logging.WARNING, from_node=switch.from_node, to_node=switch.to_node,
                      request=what, error=str(error))
        else:
            log_event(log, "failback", logging.WARNING, node=switch.to_node, request=what)

    def _once(self, method: str, url: str, base: str, body: Any, what: str, timeout: float | None) -> Any:
        session = self._session
        if timeout is not None and timeout != self.timeout:
            session = _session(timeout)
        try:
            headers = None
            if body is not None and not isinstance(body, str | bytes) and not hasattr(body, "read"):
                body, headers = dumps(body), {"Content-Type": "application/json"}
            _status, _headers, data = session.request(method, url, body=body, headers=headers,
                                                      credentials=self.credentials)
        except couch_http.Unauthorized as exc:
            raise Unauthorized(f"{what}: unauthorized ({_reason(exc)}): check the user name and password") from None
        except couch_http.Forbidden as exc:
            raise Forbidden(f"{what}: forbidden ({_reason(exc)})") from None
        except couch_http.ResourceNotFound as exc:
            raise NotFound(f"{what}: not found ({_reason(exc)})") from None
        except (couch_http.ResourceConflict, couch_http.PreconditionFailed) as exc:
            reason = _reason(exc)
            if "nodedown" in reason:
                # a cluster that lost a node answers a read it could not gather with 409/412 "nodedown: progress
                # not possible" for a moment: not a revision conflict, a failure worth another node
                raise _Transient(ServerUnreachable(f"{what}: the cluster could not serve it ({reason})")) from None
            raise Conflict(f"{what}: conflict ({reason})") from None
        except couch_http.ServerError as exc:
            status, reason = _server_error(exc)
            error = ServerError(f"{what}: server error {status} ({reason})", status)
            if status in TRANSIENT_STATUS:
                raise _Transient(error) from None
            raise error from None
        except TypeError:
            # python-couchdb fails on an error answer without a Content-Type; Apache CouchDB always sends JSON, so
            # this is a server's bare 400 for an endpoint it does not implement (PouchDB Server's _db_updates)
            raise ServerError(f"{what}: an error answer without a content type (endpoint not implemented)",
                              400) from None
        except TimeoutError:
            raise _Transient(ServerUnreachable(f"{what}: {base} did not answer within the timeout")) from None
        except OSError as exc:
            code = exc.args[0] if exc.args else None
            message = f"{what}: cannot reach {base} ({exc.strerror or exc.__class__.__name__})"
            if code in SOCKET_ERRNOS or isinstance(exc, ConnectionError | socket.gaierror):
                raise _Transient(ServerUnreachable(message)) from None
            raise ServerUnreachable(message) from None
        if data is None:
            return None
        try:
            raw = data.read()
            if hasattr(data, "close"):
                data.close()
            return loads(raw) if raw else None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # the node went away in the middle of its answer (a truncated chunked body, a reset): transient
            raise _Transient(ServerUnreachable(
                f"{what}: {base} broke off its answer ({exc.__class__.__name__})")) from None


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
