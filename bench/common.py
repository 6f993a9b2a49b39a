"""Shared pieces of the worker benchmarks: the server measured, loading generated data in bounded chunks, raw
``_bulk_docs`` timing, memory peaks.

The server: an embedded server of the benchmark's own (free loopback port, temporary directory, always stopped),
or, with ``--couch-url URL`` (admin credentials in the URL), any running server such as an Apache CouchDB 3 node
(``../shared/couchdb/couchdb3 start DIR PORT USER PASSWORD``). There the benchmark uses a database prefix of its
own (``bench<random>``), names its users and scratch databases after it, and removes them all at the end: every
other database and user is left alone. Each run prints the server and version it measured.

Figures only: nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.synthetic import AreaSize, operational_areas, uid
from workers import embedded, provision
from workers.couch import Couch, Doc
from workers.errors import NotFound, ServerError
from workers.evaluator.templates import new_plan_from_template
from workers.registry import build
from workers.runner import Runner, RunStats
from workers.settings import Settings

CHUNK = 500  # documents per _bulk_docs, as Couch.save_many writes them


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def quiet_logs(level: int = logging.WARNING) -> None:
    """The workers log one line per batch: keep the benchmark's output to its figures."""
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger().setLevel(level)


@dataclass
class Server:
    settings: Settings
    couch: Couch
    data_dir: Path


@dataclass
class _Target:
    couch_url: str | None = None  # None: an embedded server of the benchmark's own
    prefix: str = ""  # on a server given by --couch-url: this run's database and user prefix


_TARGET = _Target()


def add_server_args(parser: argparse.ArgumentParser) -> None:
    """``--couch-url URL``: measure that server (admin credentials in the URL) instead of an embedded one."""
    parser.add_argument("--couch-url", metavar="URL", default=None,
                        help="measure this running server (http://ADMIN:PASSWORD@HOST:PORT, e.g. an Apache "
                        "CouchDB 3 node) with a database prefix of the run's own, removed at the end; default: an "
                        "embedded server of the benchmark's own")


def use_server_args(args: argparse.Namespace) -> None:
    """Remember ``--couch-url`` for :func:`bench_server` (call once, after parsing)."""
    _TARGET.couch_url = getattr(args, "couch_url", None)


def server_args() -> list[str]:
    """The arguments that give a child benchmark process the same server (``--couch-url``), or none."""
    return ["--couch-url", _TARGET.couch_url] if _TARGET.couch_url else []


def scratch(name: str) -> str:
    """The name of a scratch database (or user) of this run: ``name`` on an embedded server of the run's own,
    ``<prefix>-name`` on a server given by ``--couch-url``."""
    return f"{_TARGET.prefix}-{name}" if _TARGET.prefix else name


@contextmanager
def bench_server(timeout: float = 120.0) -> Iterator[Server]:
    """The server measured, initialised with the run's databases, which are removed (or the embedded server
    stopped) at the end whatever happens. Prints which server and version it is."""
    if _TARGET.couch_url:
        with _given_server(_TARGET.couch_url, timeout) as server:
            yield server
        return
    with embedded_server(timeout) as server:
        print(f"server: {server.couch.describe()}, embedded (own, {server.settings.couch_url})", flush=True)
        yield server


@contextmanager
def _given_server(url: str, timeout: float) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="fieldsync-bench-") as tmp:
        _TARGET.prefix = f"bench{secrets.token_hex(4)}"
        settings = Settings.from_env({"FIELDSYNC_COUCH_URL": url, "FIELDSYNC_DATA_DIR": tmp,
                                      "FIELDSYNC_HTTP_TIMEOUT": str(timeout), "FIELDSYNC_DB_PREFIX": _TARGET.prefix})
        couch = Couch.from_settings(settings)
        print(f"server: {couch.describe()} at {settings.couch_url} (database prefix {_TARGET.prefix}, removed at "
              "the end)", flush=True)
        try:
            provision.init(couch, settings)
            yield Server(settings, couch, Path(tmp))
        finally:
            _remove_run(couch, _TARGET.prefix)
            _TARGET.prefix = ""


def _remove_run(couch: Couch, prefix: str) -> None:
    """Every database and user of this run (named after its prefix), nothing else."""
    for db in couch.all_dbs():
        if db == prefix or db.startswith(prefix + "-"):
            couch.delete_db(db)
    rows = couch.all_docs(provision.USERS_DB, include_docs=False, startkey=f"org.couchdb.user:{prefix}-",
                          endkey=f"org.couchdb.user:{prefix}-\ufff0")
    gone = [{"_id": r["id"], "_rev": r["value"]["rev"], "_deleted": True} for r in rows if "value" in r]
    for start in range(0, len(gone), CHUNK):
        try:
            couch.bulk_docs(provision.USERS_DB, gone[start : start + CHUNK])
        except NotFound:
            return


@contextmanager
def embedded_server(timeout: float = 120.0) -> Iterator[Server]:
    """An embedded server on a free loopback port in a temporary directory, initialised, stopped at the end
    whatever happens."""
    with tempfile.TemporaryDirectory(prefix="fieldsync-bench-") as tmp:
        password = secrets.token_urlsafe(12)
        url = f"http://bench:{password}@127.0.0.1:{free_port()}"
        settings = Settings.from_env({"FIELDSYNC_COUCH_URL": url, "FIELDSYNC_DATA_DIR": tmp,
                                      "FIELDSYNC_HTTP_TIMEOUT": str(timeout)})
        embedded.start(settings)
        try:
            couch = Couch.from_settings(settings)
            provision.init(couch, settings)
            yield Server(settings, couch, Path(tmp))
        finally:
            embedded.stop(settings)


def fresh_db(couch: Couch, name: str) -> str:
    """A new, admin-only scratch database outside fieldsync's databases (no worker follows it), named by
    :func:`scratch`; returns its name."""
    name = scratch(name)
    couch.delete_db(name)
    couch.create_db(name)
    couch.put_security(name, provision.ADMIN_ONLY)
    return name


BACKGROUND = ("indexer", "view_compaction", "database_compaction")


QUIET_S = 5.0  # background work is over once none has been listed for this long (the indexer starts late)


def _view_built(couch: Couch, db: str, ddoc_id: str, view: str, deadline: float) -> None:
    """Query ``view`` until it answers (its index built) or the deadline passes. CouchDB answers a query whose
    index takes longer to build than its own request timeout with a 500 ``timeout`` while the build goes on
    (900,000 new tasks in main's views): the query is then asked again."""
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            return
        try:
            couch.request("GET", db, ddoc_id, "_view", view, params={"limit": 0}, timeout=left)
            return
        except ServerError as error:
            if "timeout" not in str(error):
                raise
            time.sleep(1.0)


def settle_background(couch: Couch, timeout: float = 900.0, *, views_of: str | None = None) -> float:
    """Wait until the server has no view indexing or compaction under way (CouchDB's ``_active_tasks``: its
    background indexer and compaction daemon keep working on what a run wrote after the run), so that a raw
    pass after it measures the server alone. Returns the seconds waited (0 where the server lists no such tasks,
    as PouchDB Server). ``views_of``: on CouchDB, first query that database's auto-updated design documents, so
    their indexing of what the run wrote is over before, not during, the pass that follows."""
    started = time.perf_counter()
    deadline = started + timeout
    if views_of is not None and couch.server_kind() == "couchdb":
        # the background indexer may start on what the run wrote only after the quiet wait below: the
        # database's auto-updated views are brought up to date now, as the indexer would
        for ddoc in couch.all_docs(views_of, startkey="_design/", endkey="_design0", include_docs=True):
            doc = ddoc.get("doc") or {}
            if doc.get("autoupdate") is not False and doc.get("views"):
                _view_built(couch, views_of, str(doc["_id"]), next(iter(doc["views"])), deadline)
    quiet_since: float | None = None
    while time.perf_counter() < deadline:
        try:
            tasks = couch.request("GET", "_active_tasks") or []
        except NotFound:
            return 0.0
        now = time.perf_counter()
        if any(isinstance(t, dict) and t.get("type") in BACKGROUND for t in tasks):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= QUIET_S:
            return quiet_since - started
        time.sleep(1.0)
    return time.perf_counter() - started


def load(couch: Couch, db: str, docs: Iterable[Doc], chunk: int = CHUNK) -> int:
    """Write documents in chunks without holding them all; returns the count written."""
    count = 0
    part: list[Doc] = []
    for doc in docs:
        part.append(doc)
        if len(part) >= chunk:
            count += len(couch.save_many(db, part, chunk=chunk).ok)
            part = []
    if part:
        count += len(couch.save_many(db, part, chunk=chunk).ok)
    return count


def area_size(structures: int, per_area: int = 500, members: int = 4) -> AreaSize:
    areas = max(1, round(structures / per_area))
    return AreaSize(areas=areas, structures_per_area=max(1, structures // areas), members_per_family=members)


def fi_plan(seed: str, title: str = "bench") -> Doc:
    return new_plan_from_template("Dynamic-FI", uid(seed, "district"), title, date(2026, 11, 1),
                                  date(2026, 12, 31), datetime(2026, 11, 1, tzinfo=UTC))


def seed_areas(couch: Couch, settings: Settings, seed: str, size: AreaSize) -> tuple[int, Doc]:
    """Generated areas (streamed, bounded memory) and a draft Dynamic-FI plan over their district."""
    written = load(couch, settings.dbs.main, operational_areas(seed, size))
    plan = fi_plan(seed)
    couch.put(settings.dbs.main, dict(plan))
    return written, plan


def activate(couch: Couch, settings: Settings, plan_id: str) -> None:
    plan = couch.get(settings.dbs.main, plan_id) or {}
    plan["status"] = "active"
    couch.put(settings.dbs.main, plan)


def run_workers(couch: Couch, settings: Settings, names: list[str]) -> tuple[float, RunStats]:
    """``Runner(...).run(until_idle=True)`` of the named workers; (seconds, stats)."""
    built = build(names, couch, settings)
    runner = Runner(couch, settings, built.handlers, chores=built.chores, discover_every=0)
    started = time.perf_counter()
    stats = runner.run(until_idle=True)
    return time.perf_counter() - started, stats


def run_workers_awake(couch: Couch, settings: Settings, names: list[str], done: Callable[[], bool], *,
                      poll_s: float = 0.1) -> tuple[float, RunStats]:
    """The named workers as ``fieldsync work`` runs them (``Runner.run(stop)``: each feed read by a thread of its
    own, chores in theirs) until ``done()`` (asked every ``poll_s``); (seconds, stats)."""
    built = build(names, couch, settings)
    runner = Runner(couch, settings, built.handlers, chores=built.chores)
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            runner.run(stop)
        except BaseException as exc:  # reported below
            failure.append(exc)
            stop.set()

    started = time.perf_counter()
    thread = threading.Thread(target=run, name="bench-runner", daemon=True)
    thread.start()
    while not stop.is_set() and not done():
        stop.wait(poll_s)
    seconds = time.perf_counter() - started
    stop.set()
    thread.join()
    if failure:
        raise failure[0]
    return seconds, runner.stats


def raw_bulk_docs(couch: Couch, db: str, docs: list[Doc], chunk: int = CHUNK) -> float:
    """Seconds to write ``docs`` with plain ``_bulk_docs`` requests of ``chunk`` documents (no _rev)."""
    started = time.perf_counter()
    for start in range(0, len(docs), chunk):
        results = couch.bulk_docs(db, docs[start : start + chunk])
        bad = [r for r in results if r.get("error")]
        if bad:
            raise RuntimeError(f"raw _bulk_docs refused {len(bad)} documents, e.g. {bad[0]}")
    return time.perf_counter() - started


def strip_rev(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if k not in ("_rev", "_revisions", "_conflicts")}


def maxrss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def fmt(value: Any) -> str:
    return f"{value:,.0f}" if isinstance(value, float) and value >= 100 else f"{value:,.2f}" \
        if isinstance(value, float) else f"{value:,}"


# ------------------------------------------------------------------------------ added for the device and
# conflict benchmarks (workers_devices.py, workers_conflicts.py)


def write_leaves(couch: Couch, db: str, leaves: Iterable[Doc], chunk: int = CHUNK) -> int:
    """Write revisions as they are (``_bulk_docs`` with ``new_edits: false``, as a replicator does): leaves
    that carry their own ``_rev`` and ``_revisions``, e.g. two generation-1 revisions of one document, which
    makes a conflict. Returns how many were written."""
    written = 0
    part: list[Doc] = []

    def flush() -> int:
        results = couch.bulk_docs(db, part, new_edits=False)
        bad = [r for r in results if r.get("error")]
        if bad:
            raise RuntimeError(f"_bulk_docs new_edits=false refused {len(bad)} revisions, e.g. {bad[0]}")
        return len(part)

    for leaf in leaves:
        part.append(leaf)
        if len(part) >= chunk:
            written += flush()
            part = []
    if part:
        written += flush()
    return written


def count_conflicted(couch: Couch, db: str, page: int = 1000) -> tuple[int, int]:
    """(documents, of which still with ``_conflicts``) of ``db``, design documents left out; in pages of
    ``_all_docs?conflicts=true`` (bounded memory)."""
    total = conflicted = 0
    startkey: str | None = None
    while True:
        params: dict[str, Any] = {"limit": page + 1, "conflicts": True}
        if startkey is not None:
            params["startkey"] = startkey
        rows = couch.all_docs(db, include_docs=True, **params)
        for row in rows[:page]:
            if str(row.get("id", "")).startswith("_design/"):
                continue
            total += 1
            if (row.get("doc") or {}).get("_conflicts"):
                conflicted += 1
        if len(rows) <= page:
            return total, conflicted
        startkey = str(rows[page]["id"])


def audit_count(couch: Couch, settings: Settings, kind: str) -> int:
    """Audit records of one kind (``conflict``, ``parked``, ...), by the audit database's ``by_kind`` view."""
    rows = couch.view(settings.dbs.audit, "audit", "by_kind", reduce=True, startkey=[kind],
                      endkey=[kind, {}])
    return int(rows[0]["value"]) if rows else 0


def raw_round_trips(couch: Couch, db: str, count: int = 200) -> list[float]:
    """Seconds of ``count`` sequential round trips of one small ``PUT`` then a ``GET`` of the same document:
    the server's own write-then-read latency."""
    out: list[float] = []
    for i in range(count):
        doc: Doc = {"_id": f"rtt-{i:06d}", "type": "bench", "n": i}
        started = time.perf_counter()
        couch.put(db, doc)
        couch.get(db, doc["_id"])
        out.append(time.perf_counter() - started)
    return out


def spread(values: list[float], scale: float = 1000.0) -> str:
    """``p50 … p95 … max …`` of ``values`` times ``scale`` (milliseconds by default)."""
    if not values:
        return "no samples"
    return (f"p50 {percentile(values, 0.50) * scale:8.1f}  p95 {percentile(values, 0.95) * scale:8.1f}  "
            f"max {max(values) * scale:8.1f}")


def _listener_pid(port: int) -> int | None:
    """The local process listening on ``port`` (Linux ``/proc``), or None (another machine, another OS)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # state LISTEN
                inodes.add(fields[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                link = fd.readlink().as_posix()
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


def cpu_of_trees(roots: Iterable[int]) -> float:
    """CPU seconds (user + system) of the processes ``roots`` and every process below them (CouchDB's couchjs,
    node's children), those still running: one reading of ``/proc`` for them all."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(proc.name))
        cpu[int(proc.name)] = (int(fields[11]) + int(fields[12])) / ticks
    total, todo, seen = 0.0, list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += cpu.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


class ServerCpu:
    """The CPU seconds the measured server spends, read from ``/proc`` when it runs on this machine (its
    listening process and every process below it): ``take()`` returns the seconds since the last call, or
    None when the server is not a local process."""

    def __init__(self, url: str) -> None:
        port = urlsplit(url).port
        self.pid = _listener_pid(port) if port else None
        self.last = cpu_of_trees([self.pid]) if self.pid else 0.0

    def take(self) -> float | None:
        if self.pid is None:
            return None
        now = cpu_of_trees([self.pid])
        spent, self.last = now - self.last, now
        return spent
