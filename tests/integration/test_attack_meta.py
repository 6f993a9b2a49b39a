"""The attacker's tests of the meta databases and of the command line (issue 10, item 5): a meta database takes
interaction records only, no personal data passes as a ``ref``, a hostile record never stops the merge or the
workers, and the command line refuses what would hand an area to nobody in particular. Both servers."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from demo.devices import Device
from summarizer import job
from validators.interaction import daily_doc_id
from workers import provision
from workers.couch import Couch
from workers.registry import build
from workers.runner import Runner
from workers.settings import Settings

T0 = 1_795_400_000_000
DAY = "2026-11-23"
Doc = dict[str, Any]


def _record(user: str, device: str, ref: str = "task.malaria.followup") -> Doc:
    return {"_id": daily_doc_id(user, device, DAY), "type": "interaction-log",
            "sessions": [{"session": "tasks", "startedAt": T0, "events": [
                {"action": "task_list:open", "timestamp": T0},
                {"action": "task:open", "timestamp": T0 + 1000, "ref": ref}]}],
            "metadata": {"user": user, "deviceId": device, "date": DAY, "version": "5.2.0"}}


def _users(couch: Couch, s: Settings, *names: str) -> None:
    for name in names:
        provision.add_user(couch, s, name, f"{name}-pw", ["chw"])
    doc = couch.get(s.dbs.main, "settings") or {}
    doc["permissions"]["can_track_task_interactions"] = ["chw"]
    couch.put(s.dbs.main, doc)


def _meta_url(s: Settings, user: str) -> str:
    return f"{s.url_for(user, f'{user}-pw')}/{s.dbs.user_meta(user)}"


def _parked(couch: Couch, s: Settings) -> dict[str, Doc]:
    rows = couch.view(s.dbs.audit, "audit", "by_kind", reduce=False, include_docs=True,
                      startkey=["parked"], endkey=["parked", {}])
    return {str(r["doc"]["docId"]): r["doc"] for r in rows}


def _put_raw(url: str, doc_id: str, body: str) -> int:
    """PUT a JSON text as it is (Python's own encoder cannot write what an attacker can), as the URL's user."""
    parts = urllib.parse.urlsplit(url)
    bare = urllib.parse.urlunsplit((parts.scheme, parts.hostname + (f":{parts.port}" if parts.port else ""),
                                    parts.path, "", ""))
    token = base64.b64encode(f"{urllib.parse.unquote(parts.username or '')}:"
                             f"{urllib.parse.unquote(parts.password or '')}".encode()).decode()
    request = urllib.request.Request(f"{bare}/{urllib.parse.quote(doc_id, safe='')}", data=body.encode(),
                                     method="PUT", headers={"Content-Type": "application/json",
                                                            "Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _deep_json(doc: Doc, depth: int) -> str:
    head = json.dumps(doc)[:-1]
    return head + ', "junk": ' + "[" * depth + '"x"' + "]" * depth + "}"


def test_a_meta_database_takes_interaction_records_only(
    couch: Couch, initialised: Settings, tmp_path: Path
) -> None:
    s = initialised
    _users(couch, s, "greg")
    notes = {"_id": "notes-1", "type": "notes", "metadata": {"user": "greg"}, "patient": "Jane Doe",
             "hiv_status": "positive"}
    with Device(tmp_path / "greg", "greg") as greg:
        greg.put("meta", notes)
        greg.put("meta", _record("greg", "phone1"))
        result = greg.push("meta", _meta_url(s, "greg"))
    assert result["docs_written"] == 1 and result["doc_write_failures"] == 1
    message = str(result["errors"][0]["message"])
    assert "interaction records only" in message and "Jane" not in message and "positive" not in message
    # one written past the door (before the door refused them, or by a door that failed): the merge removes it
    couch.put(s.dbs.user_meta("greg"), {**notes, "_id": "notes-2"})
    report = job.run_pass(couch, s)
    assert couch.get(s.dbs.user_meta("greg"), "notes-2") is None
    assert "interaction records only" in _parked(couch, s)["notes-2"]["error"]
    assert report.per_user == {"greg": 1}


def test_names_and_phone_numbers_never_pass_as_a_ref(couch: Couch, initialised: Settings, tmp_path: Path) -> None:
    s = initialised
    _users(couch, s, "greg")
    with Device(tmp_path / "greg", "greg") as greg:
        for device, ref in (("p1", "JaneDoe_0812345678"), ("p2", "jane.doe.0812345678"), ("p3", "JaneDoe")):
            greg.put("meta", _record("greg", device, ref=ref))
        result = greg.push("meta", _meta_url(s, "greg"))
        assert result["doc_write_failures"] == 3, result
        assert all(".ref: a task title key or a form id" in str(e["message"]) for e in result["errors"])
        assert not any("0812345678" in str(e["message"]) for e in result["errors"])
        # a name that looks like a key gets through the door; a programme that lists its refs keeps only those
        settings_doc = couch.get(s.dbs.main, "settings") or {}
        couch.put(s.dbs.main, {**settings_doc, "interactionRefs": ["task.malaria.followup"]})
        greg.put("meta", _record("greg", "p4", ref="jane_doe"))
        greg.put("meta", _record("greg", "p5"))
        assert greg.push("meta", _meta_url(s, "greg"))["docs_written"] == 2
    job.run_pass(couch, s)
    merged = {d["metadata"]["deviceId"]: d for d in (couch.get(s.dbs.users_meta, daily_doc_id("greg", dev, DAY))
                                                     for dev in ("p4", "p5")) if d}
    refs = {dev: [e.get("ref") for sess in d["sessions"] for e in sess["events"]] for dev, d in merged.items()}
    assert refs == {"p4": [None, None], "p5": [None, "task.malaria.followup"]}


def test_a_deeply_nested_record_stops_neither_the_merge_nor_the_workers(
    couch: Couch, initialised: Settings
) -> None:
    s = initialised
    _users(couch, s, "greg", "hank")
    deep_id = daily_doc_id("greg", "phone1", DAY) + "-deep"
    deep = _deep_json({**_record("greg", "phone1"), "_id": deep_id}, 3000)
    # the door refuses it (an unknown field)
    assert _put_raw(_meta_url(s, "greg"), deep_id, deep) == 403
    # as an admin (a door that failed) it is stored, where the server accepts such nesting at all
    stored = _put_raw(f"{s.admin_url()}/{s.dbs.user_meta('greg')}", deep_id, deep)
    if stored >= 400:  # the server itself refuses such a document: the attack fails there
        assert stored in (400, 413), stored
        return
    couch.put(s.dbs.user_meta("hank"), _record("hank", "phone1"))
    # the workers that follow meta databases go on past it
    built = build(["conflicts"], couch, s)
    Runner(couch, s, built.handlers, discover_every=0).run(until_idle=True)
    report = job.run_pass(couch, s)
    assert report.per_user.get("hank") == 1
    assert couch.get(s.dbs.users_meta, daily_doc_id("hank", "phone1", DAY)) is not None
    assert report.failed == 0
    assert deep_id in _parked(couch, s)
    assert deep_id not in {str(r["id"]) for r in couch.all_docs(s.dbs.user_meta("greg"), include_docs=False)}


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_the_command_line_refuses_unknown_users_and_bad_urls(
    couch: Couch, initialised: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    s = initialised
    couch.put(s.dbs.main, {"_id": "oa-1", "type": "Feature", "id": "oa-1", "jurisdiction": True,
                           "properties": {"name": "oa-1", "status": "Active", "geographicLevel": 3}})
    for user in ("nobody-yet", "", " ana"):
        done = _cli(["assign", user, "oa-1"], cli_env)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (user, done.stderr)
        assert "user" in done.stderr
    assert "nobody-yet" not in str((couch.get(s.dbs.main, "assignments") or {}).get("users", {}))
    done = _cli(["teams", "assign", "some-plan", "_admin"], cli_env)
    assert done.returncode == 2 and "team" in done.stderr
    for url in ("http://a:b@127.0.0.1:99999", "http://a:b@127.0.0.1:port", "http://a:b@[::1:5984",
                "http://127.0.0.1:5984\nHost: evil", "http://a b@127.0.0.1:5984"):
        done = _cli(["status"], {**cli_env, "FIELDSYNC_COUCH_URL": url})
        assert done.returncode == 2 and "Traceback" not in done.stderr, (url, done.stderr)
        assert "FIELDSYNC_COUCH_URL" in done.stderr
    fifo = tmp_path / "plans.json"
    os.mkfifo(fifo)
    done = _cli(["load", str(fifo)], cli_env)  # would block for ever on open()
    assert done.returncode != 0 and "not a regular file" in done.stdout + done.stderr
