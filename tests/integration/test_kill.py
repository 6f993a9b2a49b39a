"""Workers are safe to kill at any moment and to run twice; they wait out a server that goes away."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from clusternodes import events

from demo.synthetic import AreaSize, operational_areas, uid
from workers import embedded, provision
from workers.areas.assignments import known_areas
from workers.areas.index import MainIndex
from workers.areas.routing import areas_of, chain
from workers.couch import Couch
from workers.evaluator.engine import activate
from workers.evaluator.lookup import InMemoryLookup
from workers.evaluator.templates import new_plan_from_template
from workers.plans import activation
from workers.settings import Settings


def _worker(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """A plan worker process (``args``: other workers beside it, options) whose log goes to a file (a pipe
    nobody reads fills up and blocks the worker)."""
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  closed with the process by the OS at the end
    proc = subprocess.Popen([sys.executable, "-m", "workers.cli", "work", "plans", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=log, text=True)
    _LOGS[proc.pid] = log
    return proc


_LOGS: dict[int, Any] = {}


def _log(proc: subprocess.Popen[str]) -> str:
    log = _LOGS[proc.pid]
    log.seek(0)
    return str(log.read())


def _wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _task_ids(couch: Couch, db: str) -> list[str]:
    # the first query of the view indexes every document written so far (tens of thousands here; minutes on
    # the embedded server of a loaded machine): a timeout of its own, not the client's default
    result = couch.request("GET", db, "_design/fieldsync", "_view", "tasks_by_plan_status",
                           params={"reduce": False}, timeout=900)
    return [row["id"] for row in result["rows"]]


UNLOGGED = 5  # tasks the feed rule of a worker killed with -9 may have written without their log line


def _as_uninterrupted(couch: Couch, db: str, expected: list[dict[str, Any]], *logs: str) -> None:
    """Each of ``expected`` (an uninterrupted activation's tasks) is stored with that very body (its revision
    aside): a replayed jurisdiction wrote what the first attempt did. The only others allowed are those the
    worker's feed rule wrote, at its own time, before the activation came to them (the follower can read the
    activation's tasks before their writer has the answer, and evaluates them): the ``tasks`` of the
    ``evaluated`` events of the worker ``logs``, and up to ``UNLOGGED`` more that a worker killed with -9 wrote
    before it could log them (seen in CI). A replay at another time would make a whole jurisdiction differ:
    hundreds of tasks here."""
    stored = couch.get_many(db, sorted(t["_id"] for t in expected))
    differing: dict[str, dict[str, tuple[Any, Any]]] = {}
    for task in expected:
        doc = stored.get(task["_id"]) or {}
        diff = {k: (doc.get(k), task.get(k)) for k in (doc.keys() | task.keys()) - {"_rev"}
                if k not in doc or k not in task or doc[k] != task[k]}
        if diff:
            differing[task["_id"]] = diff
    by_feed_rule = sum(int(str(e.get("tasks", 0))) for log in logs for e in events(log, "evaluated"))
    assert len(differing) <= by_feed_rule + UNLOGGED, (
        f"{len(differing)} of {len(expected)} tasks differ from an uninterrupted run's, {by_feed_rule} written by "
        f"the feed rule (field: stored, expected): {list(differing.items())[:3]}")


def _seed(couch: Couch, settings: Settings, seed: str, size: AreaSize) -> tuple[list[dict], dict]:  # type: ignore[type-arg]
    docs = list(operational_areas(seed, size))
    couch.save_many(settings.dbs.main, [dict(d) for d in docs])
    plan = new_plan_from_template("Dynamic-FI", uid(seed, "district"), "kill test", date(2026, 11, 1),
                                  date(2026, 12, 31), datetime(2026, 11, 1, tzinfo=UTC))
    couch.put(settings.dbs.main, dict(plan))
    return docs, plan


def _activate(couch: Couch, settings: Settings, plan_id: str) -> None:
    plan = couch.get(settings.dbs.main, plan_id) or {}
    plan["status"] = "active"
    couch.put(settings.dbs.main, plan)


def test_kill_9_mid_activation_then_restart_equals_an_uninterrupted_run(
    couch: Couch, initialised: Settings, cli_env: dict[str, str]
) -> None:
    s = initialised
    size = AreaSize(areas=10, structures_per_area=500)
    docs, plan = _seed(couch, s, "kill", size)
    assert sum(1 for d in docs if d["type"] == "Feature" and not d.get("jurisdiction")) == 5000
    # the worker digests the synced data first (and the views get built)
    first = _worker(cli_env, "--until-idle")
    assert first.wait(timeout=600) == 0, _log(first)[-3000:]
    _activate(couch, s, str(plan["_id"]))

    worker = _worker(cli_env)
    name = activation.progress_name(str(plan["_id"]))

    def some_done() -> bool:
        progress = couch.get_local(s.dbs.main, name) or {}
        return int(progress.get("jurisdictionsDone", 0)) >= 3

    _wait_for(some_done, 600, "three jurisdictions of the activation")
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    progress = couch.get_local(s.dbs.main, name) or {}
    assert progress["state"] == "running" and progress["jurisdictionsDone"] < progress["jurisdictionsTotal"]
    partial = len(_task_ids(couch, s.dbs.main))

    again = _worker(cli_env, "--until-idle")
    assert again.wait(timeout=600) == 0, _log(again)[-3000:]
    ids = _task_ids(couch, s.dbs.main)
    done = couch.get_local(s.dbs.main, name) or {}
    # evaluated at the time the activation was queued, before the kill and after it alike
    expected = activate(couch.get(s.dbs.main, str(plan["_id"])) or {}, InMemoryLookup([*docs, plan]),
                        activation.evaluation_time(done))
    assert len(ids) == len(set(ids)) > partial
    assert set(ids) == {t["_id"] for t in expected.tasks}
    # the replayed jurisdiction wrote the bodies of the first attempt: the tasks are those of an uninterrupted run
    _as_uninterrupted(couch, s.dbs.main, expected.tasks, _log(worker), _log(again))
    assert done["state"] == "done" and done["jurisdictionsDone"] == done["jurisdictionsTotal"] == 11


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_server_stopped_mid_run_the_worker_waits_and_finishes(tmp_path: Path) -> None:
    url = f"http://admin:pw@127.0.0.1:{_free_port()}"
    env = dict(os.environ, FIELDSYNC_COUCH_URL=url, FIELDSYNC_DATA_DIR=str(tmp_path / "data"),
               FIELDSYNC_LOG_FORMAT="json", FIELDSYNC_HTTP_RETRIES="1")
    settings = Settings.from_env(env)
    embedded.start(settings)
    worker = None
    try:
        couch = Couch.from_settings(settings)
        provision.init(couch, settings)
        docs, plan = _seed(couch, settings, "outage", AreaSize(areas=6, structures_per_area=150))
        _activate(couch, settings, str(plan["_id"]))
        worker = _worker(env)
        name = activation.progress_name(str(plan["_id"]))
        _wait_for(lambda: int((couch.get_local(settings.dbs.main, name) or {}).get("jurisdictionsDone", 0)) >= 1,
                  300, "the activation to start")
        embedded.stop(settings)
        time.sleep(2)  # the worker meets a closed port and backs off
        assert worker.poll() is None, "the worker must wait, not die"
        embedded.start(settings)
        try:
            _wait_for(lambda: (couch.get_local(settings.dbs.main, name) or {}).get("state") == "done", 300,
                      "the activation to finish after the outage")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the worker's log ends with:\n{_log(worker)[-4000:]}") from None
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        stderr = _log(worker)
        assert "server unreachable, waiting" in stderr and "server reachable again" in stderr
        ids = _task_ids(couch, settings.dbs.main)
        expected = activate(couch.get(settings.dbs.main, str(plan["_id"])) or {}, InMemoryLookup([*docs, plan]),
                            datetime.now(UTC))
        assert sorted(ids) == sorted(t["_id"] for t in expected.tasks)
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        embedded.stop(settings)


def test_kill_9_mid_area_sync_then_restart_fills_every_area_exactly(
    couch: Couch, initialised: Settings, cli_env: dict[str, str]
) -> None:
    """The sync worker killed while it copies the main database into the area databases: restarted, every
    area holds exactly what routing says, with the main database's revisions."""
    s = initialised
    size = AreaSize(areas=4, structures_per_area=300)
    _docs, plan = _seed(couch, s, "killsync", size)
    _activate(couch, s, str(plan["_id"]))
    sync = subprocess.Popen([sys.executable, "-m", "workers.cli", "work", "sync"], env=cli_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)

    def some_copied() -> bool:
        areas = known_areas(couch, s)
        return len(areas) >= 2 and (couch.db_info(s.dbs.area(areas[0])) or {}).get("doc_count", 0) > 200

    _wait_for(some_copied, 600, "the sync worker to fill two areas")
    sync.send_signal(signal.SIGKILL)
    sync.wait(timeout=30)
    partial = sum(int((couch.db_info(s.dbs.area(a)) or {}).get("doc_count", 0)) for a in known_areas(couch, s))

    again = subprocess.run([sys.executable, "-m", "workers.cli", "work", "sync", "--until-idle"], env=cli_env,
                           capture_output=True, text=True, timeout=900, check=False)
    assert again.returncode == 0, again.stderr[-2000:]

    index = MainIndex(couch, s.dbs.main)
    main_docs = {r["id"]: r["doc"] for r in couch.all_docs(s.dbs.main, include_docs=True)
                 if not r["id"].startswith("_design/")}
    index.learn(main_docs.values())
    areas = known_areas(couch, s)
    assert len(areas) == size.areas
    known = {a: chain(a, index) for a in areas}
    expected: dict[str, set[str]] = {a: set() for a in areas}
    for doc in main_docs.values():
        for area in areas_of(doc, index, known):
            expected[area].add(str(doc["_id"]))
    total = 0
    for area in areas:
        rows = couch.all_docs(s.dbs.area(area), include_docs=False)
        held = {r["id"]: r["value"]["rev"] for r in rows if not r["id"].startswith("_design/")}
        assert set(held) == expected[area], area
        assert all(held[i] == main_docs[i]["_rev"] for i in held)
        total += len(held)
    assert total > partial


def test_kill_9_mid_conflict_resolution_then_restart_settles_each_document_once(
    couch: Couch, initialised: Settings, cli_env: dict[str, str]
) -> None:
    """The conflict resolver killed while its batches' writes are in flight (two batches at once, each an audit
    write then a resolution): restarted, every document holds the later edit alone, with exactly one audit
    record of its resolution, and was written over once (its history is one revision longer, not two)."""
    s = initialised
    count = 3000
    leaves: list[dict[str, Any]] = []
    for n in range(count):
        base = {"_id": f"kc-{n:05d}", "type": "Task", "identifier": f"kc-{n:05d}", "planIdentifier": "plan-kill",
                "code": "IRS", "status": "Completed", "for": f"structure-{n}"}
        later = f"2026-11-21T08:{n % 60:02d}:00.000Z"
        earlier = f"2026-11-21T07:{n % 60:02d}:00.000Z"
        leaves.append({**base, "_rev": f"1-{n:05d}a", "businessStatus": "Sprayed", "lastModified": later})
        leaves.append({**base, "_rev": f"1-{n:05d}b", "businessStatus": "Not Sprayed", "lastModified": earlier})
    for start in range(0, len(leaves), 1000):
        couch.bulk_docs(s.dbs.main, leaves[start : start + 1000], new_edits=False)
    audit_before = int((couch.db_info(s.dbs.audit) or {}).get("doc_count", 0))
    resolver = subprocess.Popen([sys.executable, "-m", "workers.cli", "work", "conflicts"], env=cli_env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        _wait_for(lambda: int((couch.db_info(s.dbs.audit) or {}).get("doc_count", 0)) - audit_before > 300, 600,
                  "the resolver to audit a first batches' resolutions")
        resolver.send_signal(signal.SIGKILL)
        resolver.wait(timeout=30)
    finally:
        if resolver.poll() is None:
            resolver.kill()
    audited_at_kill = int((couch.db_info(s.dbs.audit) or {}).get("doc_count", 0)) - audit_before
    again = subprocess.run([sys.executable, "-m", "workers.cli", "work", "conflicts", "--until-idle"],
                           env=cli_env, capture_output=True, text=True, timeout=900, check=False)
    assert again.returncode == 0, again.stderr[-2000:]

    ids = [f"kc-{n:05d}" for n in range(count)]
    docs = couch.get_many(s.dbs.main, ids)
    assert len(docs) == count
    assert audited_at_kill < count  # killed mid-way
    for doc_id in ids:
        doc = docs[doc_id]
        assert doc["businessStatus"] == "Sprayed", doc
        assert int(str(doc["_rev"]).split("-")[0]) <= 2, doc  # settled by one write, not two
    still = [r["id"] for r in couch.all_docs(s.dbs.main, include_docs=True, conflicts=True)
             if r["id"].startswith("kc-") and (r.get("doc") or {}).get("_conflicts")]
    assert still == []
    records = [r["doc"] for r in couch.all_docs(s.dbs.audit, include_docs=True)
               if (r.get("doc") or {}).get("kind") == "conflict" and str(r["doc"].get("docId")).startswith("kc-")]
    per_doc: dict[str, int] = {}
    for record in records:
        per_doc[str(record["docId"])] = per_doc.get(str(record["docId"]), 0) + 1
    assert per_doc == dict.fromkeys(ids, 1)
