"""Task interaction tracking end to end: devices replicate interaction records to their user's meta
database as that user; the merge pass writes one daily document per user and device."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from demo.devices import Device
from summarizer import job
from summarizer.merge import merge_day
from validators.interaction import daily_doc_id, validate_record
from workers import provision
from workers.couch import Couch
from workers.settings import Settings

T0 = 1_795_400_000_000  # 2026-11-23T..Z
DAY = "2026-11-23"


def _events(start: int, n: int, step: int = 1000) -> list[dict[str, Any]]:
    actions = ["task_list:open", "task_list:loaded", "task:open", "task:form_open", "task:form_save",
               "task:complete", "task_list:scroll", "task_list:leave"]
    out = []
    for i in range(n):
        event: dict[str, Any] = {"action": actions[i % len(actions)], "timestamp": start + i * step}
        if event["action"].startswith("task:"):
            event["ref"] = "task.malaria.followup"
        if event["action"] == "task_list:scroll":
            event["detail"] = str(i % 7)
        out.append(event)
    return out


def _record(user: str, device: str, events: list[dict[str, Any]], *, suffix: str = "", date: str = DAY,
            session_start: int | None = None) -> dict[str, Any]:
    return {"_id": daily_doc_id(user, device, date) + suffix, "type": "interaction-log",
            "sessions": [{"session": "tasks", "startedAt": session_start or events[0]["timestamp"],
                          "events": events}],
            "metadata": {"user": user, "deviceId": device, "date": date, "version": "5.2.0"}}


def _permit(couch: Couch, settings: Settings, roles: list[str]) -> None:
    doc = couch.get(settings.dbs.main, "settings") or {}
    doc["permissions"]["can_track_task_interactions"] = roles
    couch.put(settings.dbs.main, doc)


def _meta_url(settings: Settings, user: str, password: str) -> str:
    return f"{settings.url_for(user, password)}/{settings.dbs.user_meta(user)}"


def _daily(couch: Couch, settings: Settings) -> dict[str, dict[str, Any]]:
    rows = couch.all_docs(settings.dbs.users_meta, include_docs=True, startkey="interaction-",
                          endkey="interaction-\ufff0")
    return {row["id"]: row["doc"] for row in rows}


def _left(couch: Couch, settings: Settings, user: str) -> list[str]:
    rows = couch.all_docs(settings.dbs.user_meta(user), include_docs=False, startkey="interaction-",
                          endkey="interaction-\ufff0")
    return [row["id"] for row in rows]


@pytest.fixture()
def tracked(couch: Couch, initialised: Settings) -> Settings:
    provision.add_user(couch, initialised, "greg", "greg-pw", ["chw"])
    provision.add_user(couch, initialised, "nora", "nora-pw", ["supervisor"])
    _permit(couch, initialised, ["chw"])
    return initialised


def test_two_devices_and_a_conflicted_copy_make_one_document_per_device(
    couch: Couch, tracked: Settings, tmp_path: Path
) -> None:
    s = tracked
    url = _meta_url(s, "greg", "greg-pw")
    first, second = _events(T0, 40), _events(T0 + 500, 30)
    with Device(tmp_path / "phone", "phone") as phone, Device(tmp_path / "tablet", "tablet") as tablet:
        phone.put("meta", _record("greg", "phone", first[:25]))
        # the client's write conflicted: it kept a copy of the session, with events it had already and new ones
        phone.put("meta", {**_record("greg", "phone", first[20:], suffix="-conflicted-1795400099000",
                                     session_start=T0),
                           "metadata": {"user": "greg", "deviceId": "phone", "date": DAY, "version": "5.2.0",
                                        "conflicted": True}})
        tablet.put("meta", _record("greg", "tablet", second[:10]))
        tablet.put("meta", _record("greg", "tablet", second[10:], suffix="-part-2"))
        pushed = phone.push("meta", url)
        assert pushed["docs_written"] == 2, pushed["errors"]
        assert tablet.push("meta", url)["docs_written"] == 2
    report = job.run_pass(couch, s)
    assert report.records == 4 and report.not_permitted == 0 and report.parked == 0
    daily = _daily(couch, s)
    assert sorted(daily) == [daily_doc_id("greg", "phone", DAY), daily_doc_id("greg", "tablet", DAY)]
    phone_doc = daily[daily_doc_id("greg", "phone", DAY)]
    assert phone_doc["summary"]["events"] == 40  # the 5 shared events counted once
    assert phone_doc["summary"]["actions"]["task:complete"] == 5
    assert daily[daily_doc_id("greg", "tablet", DAY)]["summary"]["events"] == 30
    assert _left(couch, s, "greg") == []
    # a second pass changes nothing
    revs = {k: v["_rev"] for k, v in daily.items()}
    job.run_pass(couch, s)
    assert {k: v["_rev"] for k, v in _daily(couch, s).items()} == revs


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_the_cap_is_per_user_across_devices_whatever_the_sync_order(
    couch: Couch, tracked: Settings, tmp_path: Path, order: tuple[str, str]
) -> None:
    s = tracked
    url = _meta_url(s, "greg", "greg-pw")
    events = {"a": _events(T0, 300, step=2000), "b": _events(T0 + 1000, 300, step=2000)}
    for name in order:  # each device syncs and a pass runs before the other device shows up
        with Device(tmp_path / name, name) as device:
            device.put("meta", _record("greg", name, events[name]))
            device.push("meta", url)
        job.run_pass(couch, s)
    daily = _daily(couch, s)
    kept = sorted(e["timestamp"] for d in daily.values() for sess in d["sessions"] for e in sess["events"])
    everything = sorted(e["timestamp"] for name in "ab" for e in events[name])
    assert kept == everything[:500]
    assert all(d["summary"]["capReached"] for d in daily.values())
    assert sum(d["summary"]["droppedByCap"] for d in daily.values()) == 100


def test_a_user_without_the_permission_leaves_nothing(couch: Couch, tracked: Settings, tmp_path: Path) -> None:
    s = tracked
    with Device(tmp_path / "nora", "nora") as device:
        device.put("meta", _record("nora", "n1", _events(T0, 12)))
        device.push("meta", _meta_url(s, "nora", "nora-pw"))
    assert len(_left(couch, s, "nora")) == 1
    report = job.run_pass(couch, s)
    assert report.not_permitted == 1 and report.documents_written == 0
    assert _daily(couch, s) == {} and _left(couch, s, "nora") == []
    assert job.status(couch, s)["totals"]["not_permitted"] == 1


def test_records_with_personal_data_are_refused_at_the_door(couch: Couch, tracked: Settings, tmp_path: Path) -> None:
    s = tracked
    good = _record("greg", "phone", _events(T0, 5))
    answer = _record("greg", "phone", _events(T0 + 10_000, 3), suffix="-part-2")
    answer["sessions"][0]["events"][0]["answer"] = "positive malaria test"
    other_user = _record("nora", "phone", _events(T0, 3), suffix="-part-3")
    other_user["_id"] = daily_doc_id("greg", "phone", DAY) + "-part-3"
    with Device(tmp_path / "d", "d") as device:
        for doc in (good, answer, other_user):
            device.put("meta", doc)
        result = device.push("meta", _meta_url(s, "greg", "greg-pw"))
    assert result["docs_written"] == 1 and result["doc_write_failures"] == 2
    reasons = " ".join(str(e["message"]) for e in result["errors"])
    assert "answer" in reasons and "positive malaria" not in reasons
    assert _left(couch, s, "greg") == [good["_id"]]


def test_invalid_records_written_by_an_admin_are_parked_with_the_reason(couch: Couch, tracked: Settings) -> None:
    s = tracked
    bad = _record("greg", "phone", _events(T0, 4), suffix="-part-9")
    bad["sessions"][0]["events"][1]["action"] = "task:delete_everything"
    couch.put(s.dbs.user_meta("greg"), bad)  # admins pass the validation function
    couch.put(s.dbs.user_meta("greg"), _record("greg", "phone", _events(T0 + 100_000, 4)))
    report = job.run_pass(couch, s)
    assert report.parked == 1 and report.documents_written == 1
    parked = couch.view(s.dbs.audit, "audit", "by_kind", reduce=False, include_docs=True,
                        startkey=["parked"], endkey=["parked", {}])
    [record] = [row["doc"] for row in parked]
    assert record["docId"] == bad["_id"] and "action" in record["error"] and record["doc"]["sessions"]
    assert _left(couch, s, "greg") == []


def test_a_crash_between_writing_and_deleting_changes_nothing(couch: Couch, tracked: Settings) -> None:
    s = tracked
    records = [_record("greg", "phone", _events(T0, 50)), _record("greg", "tablet", _events(T0 + 7, 50))]
    for doc in records:
        couch.put(s.dbs.user_meta("greg"), dict(doc))
    # the pass died after writing the daily documents and before removing the records: do exactly that
    job._write_day(couch, s, "greg", DAY, [validate_record(d, expected_user="greg") for d in records], 500)
    assert len(_left(couch, s, "greg")) == 2
    job.run_pass(couch, s)
    daily = _daily(couch, s)
    expected = {d["_id"]: d for d in merge_day(records)}
    assert {k: {f: v for f, v in d.items() if f != "_rev"} for k, d in daily.items()} == expected
    assert sum(d["summary"]["events"] for d in daily.values()) == 100


def test_kill_9_during_a_pass_then_again_gives_the_same_documents(
    couch: Couch, tracked: Settings, cli_env: dict[str, str]
) -> None:
    s = tracked
    # three groups of meta databases (job.GROUP at a time): the kill lands after the first group's daily
    # documents, while the others' records are still there (one group was merged whole before the poll saw it)
    users = [f"u{i:03d}" for i in range(2 * job.GROUP + 10)]
    everything: dict[str, list[dict[str, Any]]] = {}
    for i, user in enumerate(users):
        provision.add_user(couch, s, user, "pw", ["chw"])
        docs = [_record(user, "d1", _events(T0 + i, 60)), _record(user, "d2", _events(T0 + 3 + i, 60))]
        couch.save_many(s.dbs.user_meta(user), [dict(d) for d in docs])
        everything[user] = docs
    proc = subprocess.Popen([sys.executable, "-m", "workers.cli", "summarize"], env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not _daily(couch, s) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert any(_left(couch, s, u) for u in users), "the kill should land mid-pass"
    job.run_pass(couch, s)
    daily = _daily(couch, s)
    expected = {d["_id"]: d for docs in everything.values() for d in merge_day(docs)}
    assert {k: {f: v for f, v in d.items() if f != "_rev"} for k, d in daily.items()} == expected
    assert all(_left(couch, s, u) == [] for u in users)


def test_a_record_updated_on_the_device_and_synced_again_arrives_updated(
    couch: Couch, tracked: Settings, tmp_path: Path
) -> None:
    """CHT rewrites the day's record as the day goes on: the second push is an update of a document the server
    has (replicated with new_edits:false through the meta database's validate_doc_update). PouchDB Server 4.2
    used to drop such updates silently; server/server.js fixes its validation plugin."""
    s = tracked
    url = _meta_url(s, "greg", "greg-pw")
    events = _events(T0, 30)
    with Device(tmp_path / "phone", "phone") as phone:
        phone.put("meta", _record("greg", "phone", events[:10]))
        assert phone.push("meta", url)["docs_written"] == 1
        morning = phone.get("meta", daily_doc_id("greg", "phone", DAY))
        phone.put("meta", {**_record("greg", "phone", events), "_rev": morning["_rev"]})
        assert phone.push("meta", url)["docs_written"] == 1
        local = phone.get("meta", daily_doc_id("greg", "phone", DAY))
    stored = couch.get(s.dbs.user_meta("greg"), daily_doc_id("greg", "phone", DAY)) or {}
    assert stored["_rev"] == local["_rev"] and stored["_rev"].startswith("2-")
    assert len(stored["sessions"][0]["events"]) == 30
    job.run_pass(couch, s)
    assert _daily(couch, s)[daily_doc_id("greg", "phone", DAY)]["summary"]["events"] == 30


def test_the_interval_pass_reads_only_the_meta_databases_changed_since_the_last_pass(
    couch: Couch, tracked: Settings
) -> None:
    """The positions the last pass kept (one ``_local`` document for every database) let the interval pass skip
    the meta databases with nothing new, and read the one a device wrote to since."""
    s = tracked
    users = ["greg", "nora", "chw0", "chw1"]
    for user in users[2:]:
        provision.add_user(couch, s, user, f"{user}-pw", ["chw"])
    _permit(couch, s, ["chw", "supervisor"])
    for n, user in enumerate(users):
        couch.put(s.dbs.user_meta(user), _record(user, "phone", _events(T0 + n * 10_000, 3)))
    first = job.run_pass(couch, s, group=2)
    assert first.records == len(users) and first.skipped_unchanged == 0
    assert set(job.positions(couch, s)) >= {s.dbs.user_meta(u) for u in users}

    idle = job.run_pass(couch, s, full=False)
    assert idle.skipped_unchanged == idle.databases >= len(users) and idle.records == 0

    couch.put(s.dbs.user_meta("nora"), _record("nora", "tablet", _events(T0 + 50_000, 4)))
    later = job.run_pass(couch, s, full=False)
    assert later.records == 1 and later.skipped_unchanged == later.databases - 1
    assert _left(couch, s, "nora") == []
    assert {d["metadata"]["deviceId"] for d in _daily(couch, s).values() if d["metadata"]["user"] == "nora"} == {
        "phone", "tablet"}


def test_groups_of_users_are_merged_while_the_previous_group_is_finished(couch: Couch, tracked: Settings) -> None:
    """Groups of 2 meta databases: each group read (several at once, while the group before is written),
    merged and written while the previous group's records are removed and its checkpoints moved. Every user's
    records end merged once, none is left, every database has its checkpoint, and a second pass writes
    nothing."""
    s = tracked
    users = ["greg", "nora", *(f"chw{n}" for n in range(5))]
    for user in users[2:]:
        provision.add_user(couch, s, user, f"{user}-pw", ["chw"])
    _permit(couch, s, ["chw", "supervisor"])
    for n, user in enumerate(users):
        couch.put(s.dbs.user_meta(user), _record(user, "phone", _events(T0 + n * 10_000, 3 + n)))
    report = job.run_pass(couch, s, group=2)
    assert report.users == len(users) and report.records == len(users) and report.removed == len(users)
    daily = _daily(couch, s)
    assert {d["metadata"]["user"]: d["summary"]["events"] for d in daily.values()} == {
        user: 3 + n for n, user in enumerate(users)}
    positions = job.positions(couch, s)
    for user in users:
        assert _left(couch, s, user) == []
        assert positions[s.dbs.user_meta(user)]["permitted"] is True
    # (a cluster writes one position differently from one read to the next: positions are not compared here)
    again = job.run_pass(couch, s)
    assert again.documents_written == 0 and again.records == 0 and again.removed == 0
    assert _daily(couch, s).keys() == daily.keys()
