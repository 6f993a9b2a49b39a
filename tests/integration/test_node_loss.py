"""One node of a 3-node CouchDB cluster stopped in the middle of the work, then started again: during an activation
over 5,000 structures, during an interaction merge pass, during device sync. The workers talk to every node
(``FIELDSYNC_COUCH_URL`` names the three) with node 1 as home, so stopping node 1 makes them fail over, and fail
back once it is up again. Afterwards every task exists once, every interaction is counted once, no document is in
conflict, nothing a device wrote is lost, and the logs show the failover. Needs ``scripts/test --cluster``."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from areaworld import NORTH, assign, register_structure, structure, user_url, world  # noqa: F401
from clusternodes import Cluster, cluster, events  # noqa: F401
from test_interactions import T0, _daily, _events, _left, _record, tracked  # noqa: F401
from test_kill import _activate, _as_uninterrupted, _log, _seed, _task_ids, _wait_for, _worker

from bench.common import count_conflicted
from demo.devices import Device
from demo.synthetic import AreaSize
from summarizer import job
from summarizer.merge import merge_day
from workers import provision
from workers.couch import Couch
from workers.evaluator.engine import activate
from workers.evaluator.lookup import InMemoryLookup
from workers.plans import activation
from workers.settings import Settings

HOME = 1  # the node every client here asks first (shard 0/1)
FAILBACK = "3"  # seconds before a failed node is tried again


def _env(cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "FIELDSYNC_FAILBACK_SECONDS": FAILBACK, "FIELDSYNC_LOG_LEVEL": "INFO"}


def _waiting(proc: subprocess.Popen[str], log: Callable[[], str], condition: Callable[[], bool], timeout: float,
             what: str) -> None:
    """Until ``condition``; a process that exits meanwhile, or a timeout, fails with the end of its log."""
    def check() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"exited ({proc.returncode}) while waiting for {what}")
        return condition()
    try:
        _wait_for(check, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; its log ends with:\n{log()[-4000:]}") from None


def _conflicted(couch: Couch, db: str) -> list[tuple[str, str, list[str], str]]:
    """(id, winning revision, other leaves, type) of the documents of ``db`` listed with ``_conflicts`` (at most
    5): what a failure names, for whoever reads it."""
    rows = couch.all_docs(db, include_docs=True, conflicts=True)
    found = [row["doc"] for row in rows if (row.get("doc") or {}).get("_conflicts")]
    return [(str(d["_id"]), str(d["_rev"]), list(d["_conflicts"]), str(d.get("type"))) for d in found[:5]]


def _no_conflicts(couch: Couch, *dbs: str) -> None:
    for db in dbs:
        total, conflicted = count_conflicted(couch, db)
        assert total > 0 and conflicted == 0, f"{db}: {conflicted} of {total} documents in conflict"


@pytest.mark.timeout(1800)  # 5,000 structures loaded, digested and activated on three nodes of a shared machine
def test_node_lost_during_an_activation_of_5000_structures(
    cluster: Cluster, couch: Couch, initialised: Settings, cli_env: dict[str, str]  # noqa: F811
) -> None:
    s = initialised
    env = _env(cli_env)
    docs, plan = _seed(couch, s, "nodeloss", AreaSize(areas=10, structures_per_area=500))
    assert sum(1 for d in docs if d["type"] == "Feature" and not d.get("jurisdiction")) == 5000
    first = _worker(env, "--until-idle")
    assert first.wait(timeout=600) == 0, _log(first)[-3000:]
    _activate(couch, s, str(plan["_id"]))
    worker = _worker(env, "conflicts")  # as deployed: the resolver runs beside the plan worker
    name = activation.progress_name(str(plan["_id"]))

    def done_count() -> int:
        return int((couch.get_local(s.dbs.main, name) or {}).get("jurisdictionsDone", 0))

    try:
        log = lambda: _log(worker)  # noqa: E731
        _waiting(worker, log, lambda: done_count() >= 2, 600, "two jurisdictions of the activation")
        cluster.stop(HOME)
        at_stop = done_count()
        _waiting(worker, log, lambda: done_count() >= at_stop + 2, 600, "the activation to go on without node 1")
        cluster.start(HOME)
        _waiting(worker, log, lambda: (couch.get_local(s.dbs.main, name) or {}).get("state") == "done", 600,
                 "the activation to finish")
        _waiting(worker, log, lambda: bool(events(_log(worker), "failback")), 120, "the worker to fail back")
        # a write that node 1 alone took before it went down comes back with it. A replayed activation batch
        # wrote the same bodies (hence revisions): they merge. Any other second leaf is the running resolver's
        # to settle (seen in CI before replays were deterministic: 1 of 44,592 documents, never settled since
        # only the plan worker ran), and a listing may read node 1's copy before internal replication has
        # brought it the resolution: both take a bounded while
        _waiting(worker, log, lambda: count_conflicted(couch, s.dbs.main)[1] == 0, 180,
                 f"every conflict settled on every copy (in conflict at failback: {_conflicted(couch, s.dbs.main)})")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    text = _log(worker)
    failovers = events(text, "failover")
    assert failovers and failovers[0]["from_node"] == cluster.url(HOME), text[-3000:]
    ids = _task_ids(couch, s.dbs.main)
    expected = activate(couch.get(s.dbs.main, str(plan["_id"])) or {}, InMemoryLookup([*docs, plan]),
                        activation.evaluation_time(couch.get_local(s.dbs.main, name) or {}))
    assert len(ids) == len(set(ids)) == len(expected.tasks)
    assert set(ids) == {t["_id"] for t in expected.tasks}
    _as_uninterrupted(couch, s.dbs.main, expected.tasks, text)
    _no_conflicts(couch, s.dbs.main)


def test_node_lost_during_an_interaction_merge_pass(
    cluster: Cluster, couch: Couch, tracked: Settings, cli_env: dict[str, str]  # noqa: F811
) -> None:
    s = tracked
    users = [f"u{i:02d}" for i in range(30)]
    everything = {}
    for i, user in enumerate(users):
        provision.add_user(couch, s, user, "pw", ["chw"])
        docs = [_record(user, "d1", _events(T0 + i, 80)), _record(user, "d2", _events(T0 + 3 + i, 80))]
        couch.save_many(s.dbs.user_meta(user), [dict(d) for d in docs])
        everything[user] = docs
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "workers.cli", "summarize"], env=_env(cli_env),
                            stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        _wait_for(lambda: bool(_daily(couch, s)), 120, "the pass to write its first daily documents")
        cluster.stop(HOME)
        assert proc.wait(timeout=600) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        cluster.start(HOME)
    log.seek(0)
    text = log.read()
    assert events(text, "failover"), text[-3000:]
    job.run_pass(couch, s)  # a second pass after the node is back changes nothing
    daily = _daily(couch, s)
    expected = {d["_id"]: d for docs in everything.values() for d in merge_day(docs)}
    assert {k: {f: v for f, v in d.items() if f != "_rev"} for k, d in daily.items()} == expected
    # node 1 was down when the first pass purged most records: its copies take those purges from the other
    # nodes once it is back (internal replication), and a listing may read its copy meanwhile (seen in CI):
    # wait for them, a bounded while
    def left() -> dict[str, list[str]]:
        return {u: ids for u in users if (ids := _left(couch, s, u))}
    try:
        _wait_for(lambda: not left(), 60, "every merged record removed on every copy")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: still listed {left()}") from None
    _no_conflicts(couch, s.dbs.users_meta)


def test_node_lost_during_device_sync(
    cluster: Cluster, couch: Couch, world: tuple[Settings, dict], cli_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    """Devices keep syncing through node 3 while the workers' node 1 is down; what they wrote reaches the main
    database once, its follow-on tasks are made once, and their conflicting edits are settled."""
    s, plan = world
    assign(couch, s, "ana", NORTH)
    assign(couch, s, "cara", NORTH)
    via3 = s.model_copy(update={"couch_url": cluster.url(3), "couch_nodes": [cluster.url(3)]})
    url = {u: user_url(via3, u, s.dbs.area(NORTH)) for u in ("ana", "cara")}
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, "-m", "workers.cli", "work"], env=_env(cli_env),
                              stdout=subprocess.DEVNULL, stderr=log, text=True)
    written: dict[str, str] = {}
    try:
        with Device(tmp_path / "ana", "ana") as ana, Device(tmp_path / "cara", "cara") as cara:
            ana.pull("area", url["ana"])
            cara.pull("area", url["cara"])

            def write(batch: range) -> None:
                for i in batch:
                    ana.put("area", structure(f"s-dev{i:02d}", NORTH))
                    ana.put("area", register_structure(f"ev-dev{i:02d}", f"s-dev{i:02d}", NORTH, str(plan["_id"])))
                assert ana.push("area", url["ana"])["docs_written"] == 2 * len(batch)

            write(range(0, 10))
            cluster.stop(HOME)
            write(range(10, 20))
            # both edit one task offline, then sync through node 3 while node 1 is down
            task_id = next(d["_id"] for d in ana.docs("area") if d.get("type") == "Task" and d.get("for") == "s-n1")
            mine, theirs = ana.get("area", task_id), cara.get("area", task_id)
            ana.put("area", {**mine, "status": "Completed", "businessStatus": "Sprayed",
                             "lastModified": "2026-11-23T10:00:00.000Z"})
            cara.put("area", {**theirs, "status": "Completed", "businessStatus": "Not Sprayed",
                              "lastModified": "2026-11-23T07:30:00.000Z"})
            assert ana.push("area", url["ana"])["docs_written"] == 1
            assert cara.push("area", url["cara"])["docs_written"] == 1
            written = {str(d["_id"]): str(d["_rev"]) for d in ana.docs("area")
                       if str(d["_id"]).startswith(("s-dev", "ev-dev"))}

            def settled() -> bool:
                main = couch.get_many(s.dbs.main, sorted(written))
                if any(main.get(i, {}).get("_rev") != rev for i, rev in written.items()):
                    return False
                tasks = {(t["for"], t["code"]) for t in
                         (r["doc"] for r in couch.all_docs(s.dbs.main, include_docs=True)) if t.get("type") == "Task"}
                winner = couch.get(s.dbs.main, task_id, conflicts=True) or {}
                return all((f"s-dev{i:02d}", "IRS") in tasks for i in range(20)) and not winner.get("_conflicts")

            _waiting(worker, lambda: _read(log), settled, 600,
                     "the device's documents and their tasks in the main database without node 1")
            cluster.start(HOME)
            _waiting(worker, lambda: _read(log), lambda: bool(events(_read(log), "failback")), 120,
                     "the workers to fail back to node 1")
            time.sleep(2)
            ana.pull("area", url["ana"])
            cara.pull("area", url["cara"])
            assert ana.get("area", task_id)["businessStatus"] == cara.get("area", task_id)["businessStatus"] \
                == "Sprayed"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    text = _read(log)
    assert events(text, "failover"), text[-3000:]
    main = couch.get_many(s.dbs.main, sorted(written))
    assert {i: d["_rev"] for i, d in main.items()} == written  # nothing the device wrote is lost
    tasks = [r["doc"] for r in couch.all_docs(s.dbs.main, include_docs=True) if r["doc"].get("type") == "Task"]
    keys = [(t["for"], t["code"], t.get("planIdentifier")) for t in tasks if str(t["for"]).startswith("s-dev")]
    assert len(keys) == len(set(keys)) == 40  # Register Structure and IRS, once each, for 20 structures
    _no_conflicts(couch, s.dbs.main, s.dbs.area(NORTH))


def _read(log: object) -> str:
    log.seek(0)  # type: ignore[attr-defined]
    return str(log.read())  # type: ignore[attr-defined]
