"""``fieldsync demo --use-couch-url`` runs to the end (a smaller size) on the suite's server, whichever it is,
leaving every other database and user alone, and its report says what the databases hold; the map export is
valid GeoJSON coloured by the settings' styles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from demo import report
from validators.app_settings import AppSettings
from workers import provision
from workers.couch import Couch
from workers.settings import Settings

PREFIX = "tdemo"
USERS = {short: f"{PREFIX}-{short}" for short in ("ana", "ben", "cara", "dan")}
BYSTANDER = "tdemobystander"  # another prefix's main database, and a user with a demo user's short name


@pytest.fixture(scope="module")
def demo_run(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, Any]]:
    settings = base_settings.model_copy(update={"db_prefix": PREFIX})
    couch = Couch.from_settings(settings)
    couch.delete_db(BYSTANDER)
    couch.create_db(BYSTANDER)
    couch.put(BYSTANDER, {"_id": "keep", "n": 1})
    provision.add_user(couch, settings.model_copy(update={"db_prefix": BYSTANDER}), "ana", "bystander-pw", ["chw"])
    work = tmp_path_factory.mktemp("demo")
    env = {"FIELDSYNC_COUCH_URL": settings.admin_url(), "FIELDSYNC_DATA_DIR": str(work / "data"),
           "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "FIELDSYNC_LOG_FORMAT": "json",
           "FIELDSYNC_LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "-m", "workers.cli", "demo", "--use-couch-url", "--prefix", PREFIX,
                           "--areas", "2", "--structures", "16", "--json", str(work / "report.json")],
                          env=env, capture_output=True, text=True, check=False, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert f"databases with prefix {PREFIX} only" in done.stdout
    assert "embedded server" not in done.stdout  # nothing started, nothing stopped
    # no server's files in the data directory: at most the plan worker's read model
    assert not (work / "data").exists() or {p.name for p in (work / "data").iterdir()} <= {"readmodel"}
    with open(work / "report.json", encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return settings, data


def test_the_demo_leaves_every_other_database_and_user_alone(
    demo_run: tuple[Settings, dict[str, Any]]
) -> None:
    s, _data = demo_run
    couch = Couch.from_settings(s)
    assert (couch.get(BYSTANDER, "keep") or {}).get("_rev", "").startswith("1-")
    assert couch.db_info(BYSTANDER) is not None and (couch.db_info(BYSTANDER) or {})["doc_count"] == 1
    assert provision.user_roles(couch, "ana") == ["chw"]
    assert couch.as_user("ana", "bystander-pw").session()["userCtx"]["name"] == "ana"
    assert all(provision.user_roles(couch, name) for name in USERS.values())
    mine = {db for db in couch.all_dbs() if s.dbs.kind(db) is not None}
    assert s.dbs.main in mine and s.dbs.user_meta(USERS["dan"]) in mine


def _docs(couch: Couch, db: str) -> list[dict[str, Any]]:
    return [r["doc"] for r in couch.all_docs(db, include_docs=True) if not r["id"].startswith("_design/")]


def test_the_report_matches_the_databases(demo_run: tuple[Settings, dict[str, Any]]) -> None:
    s, data = demo_run
    couch = Couch.from_settings(s)
    tasks = [d for d in _docs(couch, s.dbs.main) if d.get("type") == "Task"]
    assert data["tasksTotal"] == len(tasks) > 0
    counted = Counter((t["planIdentifier"], t["code"], t["status"], t.get("businessStatus")) for t in tasks)
    assert {(r["planId"], r["code"], r["status"], r["businessStatus"]): r["count"] for r in data["tasks"]} == counted

    # the walk-throughs happened: points dropped and sprayed, follow-on tasks, the conflict, the cancellation
    by_code = Counter((t["code"], t["status"], t.get("businessStatus")) for t in tasks)
    assert by_code[("Register Structure", "Completed", "Complete")] == 2
    assert by_code[("IRS", "Completed", "Sprayed")] >= 4 and by_code[("IRS", "Completed", "Not Sprayed")] == 1
    assert by_code[("Blood Screening", "Completed", "Tested")] == 1
    facts = data["facts"]
    assert {"Bednet Distribution", "Blood Screening"} <= set(facts["fi_follow_ups"])
    audit = _docs(couch, s.dbs.audit)
    conflicts = [d for d in audit if d.get("kind") == "conflict"]
    assert len(data["conflicts"]) == len(conflicts) == 1
    assert data["conflicts"][0]["winner"] == "Sprayed" and facts["conflict_converged"] is True
    cancellations = [d for d in audit if d.get("kind") == "cancellation"]
    assert len(data["cancellations"]) == len(cancellations) >= 1
    assert {c["reason"] for c in data["cancellations"]} == {"Completed in another plan"}
    cancelled = [t for t in tasks if t["status"] == "Cancelled"]
    assert {t["_id"] for t in cancelled} == {c["task"] for c in data["cancellations"]}

    # interactions: one daily document per permitted user's device, nothing left for anyone
    daily = [d for d in _docs(couch, s.dbs.users_meta) if d.get("type") == "interaction-log"]
    assert sorted(data["interactions"]) == sorted({d["metadata"]["user"] for d in daily}) == [
        USERS["ana"], USERS["ben"], USERS["cara"]]
    for user, entry in data["interactions"].items():
        mine = [d for d in daily if d["metadata"]["user"] == user]
        assert entry["events"] == sum(len(x["events"]) for d in mine for x in d["sessions"])
    assert data["interactionRecordsLeft"] == {name: 0 for name in USERS.values()}

    # areas: the figures are the databases' own
    for area in data["areas"]:
        assert area["docs"] == (couch.db_info(area["db"]) or {})["doc_count"]
    assert data["refused"] == 0 and data["parked"] == 0

    text = "\n".join(report.render(data))
    assert f"({data['tasksTotal']} in all)" in text and "Conflicts resolved: 1" in text
    assert f"no document for {USERS['dan']}" in text


def test_the_map_export_is_valid_geojson_coloured_by_the_settings(
    demo_run: tuple[Settings, dict[str, Any]], tmp_path: Path
) -> None:
    s, data = demo_run
    couch = Couch.from_settings(s)
    irs = next(pid for pid, title in data["plans"].items() if title.startswith("IRS"))
    env = {"FIELDSYNC_COUCH_URL": s.admin_url(), "FIELDSYNC_DB_PREFIX": s.db_prefix,
           "FIELDSYNC_DATA_DIR": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    done = subprocess.run([sys.executable, "-m", "workers.cli", "export", "map", "--plan", irs], env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    collection = json.loads(done.stdout)
    assert collection["type"] == "FeatureCollection"
    styles = AppSettings.model_validate(couch.get(s.dbs.main, "settings"))
    structures = {d["_id"] for d in _docs(couch, s.dbs.main)
                  if d.get("type") == "Feature" and not d.get("jurisdiction")}
    assert {f["id"] for f in collection["features"]} == structures
    colours = Counter()
    for feature in collection["features"]:
        assert feature["type"] == "Feature"
        geometry = feature["geometry"]
        assert geometry["type"] == "Point" and len(geometry["coordinates"]) == 2
        assert all(isinstance(x, float) for x in geometry["coordinates"])
        props = feature["properties"]
        if props["code"] is None:
            assert props["color"] is None and props["tasks"] == []
            continue
        assert props["color"] == styles.color_for(props["code"], props["businessStatus"])
        colours[(props["businessStatus"], props["color"])] += 1
    assert colours[("Sprayed", "#2ECC40")] >= 4
    assert colours[("Not Sprayed", "#FF0000")] == 1
    assert colours[("Not Visited", "#FFCA16")] > 0

    missing = subprocess.run([sys.executable, "-m", "workers.cli", "export", "map", "--plan", "no-such-plan"],
                             env=env, capture_output=True, text=True, check=False)
    assert missing.returncode == 2 and "no-such-plan" in missing.stderr and "Traceback" not in missing.stderr
