"""The attacker's tests of the device trust boundary (issue 10): a field user's writes can never change what
belongs to someone else. Each attack is made as a user would make it from a phone: a real PouchDB device
replicating into its own area's database as that user, or plain HTTP with that user's credentials. Where the
area's door cannot see an attack, the same write is also made past the door (as an admin writing straight into
the area database, i.e. a door that failed), to prove the second line, the sync worker, holds on its own.

The same tests run on every server the suite runs against (the embedded server and Apache CouchDB 3.5).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from areaworld import NORTH, SOUTH, Doc, assign, family, run_workers, structure, user_url, world

from demo.devices import Device
from workers.couch import Couch
from workers.settings import Settings

__all__ = ["world"]  # the fixture


def _refused(couch: Couch, s: Settings) -> dict[str, Doc]:
    rows = couch.view(s.dbs.audit, "audit", "by_kind", reduce=False, include_docs=True,
                      startkey=["refused"], endkey=["refused", {}])
    return {str(row["doc"]["docId"]): row["doc"] for row in rows}


def _living(couch: Couch, db: str, doc_id: str) -> list[Doc]:
    """Every living leaf revision of ``doc_id`` in ``db``."""
    found = couch.get(db, doc_id, conflicts=True)
    if found is None:
        return []
    leaves = [found]
    for rev in found.get("_conflicts", []):
        other = couch.get(db, doc_id, rev=rev)
        if other is not None:
            leaves.append(other)
    return leaves


def _push(device: Device, s: Settings, user: str, area: str) -> dict[str, Any]:
    return device.push("area", user_url(s, user, s.dbs.area(area)))


def _pull(device: Device, s: Settings, user: str, area: str) -> dict[str, Any]:
    return device.pull("area", user_url(s, user, s.dbs.area(area)))


def _branch(doc: Doc) -> Doc:
    """A first revision with an unrelated history under an existing id: the area's door sees no old document."""
    rev_id = secrets.token_hex(16)
    return {**doc, "_rev": f"1-{rev_id}", "_revisions": {"start": 1, "ids": [rev_id]}}


def test_a_spoofed_assignments_document_never_reaches_the_main_database(
    couch: Couch, world: tuple[Settings, Doc], tmp_path: Path
) -> None:
    s, _ = world
    assign(couch, s, "ana", NORTH)
    before = couch.get(s.dbs.main, "assignments") or {}
    spoof = {**family("assignments", "s-n1"), "users": {"ana": [NORTH, SOUTH]},
             "dateEdited": "2099-01-01T00:00:00.000Z", "lastModified": "2099-01-01T00:00:00.000Z"}
    with Device(tmp_path / "ana", "ana") as ana:
        ana.put("area", spoof)
        result = _push(ana, s, "ana", NORTH)
        assert result["doc_write_failures"] == 1
        assert "reserved id" in str(result["errors"][0]["message"])
        # past the door (a door that failed), as a new branch: the worker refuses it against the main database
        couch.bulk_docs(s.dbs.area(NORTH), [_branch(spoof)], new_edits=False)
        run_workers(couch, s)
        after = couch.get(s.dbs.main, "assignments", conflicts=True) or {}
        assert after["_rev"] == before["_rev"] and "_conflicts" not in after
        assert after.get("users", {}).get("ana") == [NORTH]
        assert "reserved id" in _refused(couch, s)["assignments"]["error"]
        assert _living(couch, s.dbs.area(NORTH), "assignments") == []  # withdrawn from the area as well
        # and ana still cannot read the south
        try:
            _pull(ana, s, "ana", SOUTH)
            raise AssertionError("ana pulled the south area")
        except Exception as exc:  # DeviceError 401/403
            assert getattr(exc, "status", None) in (401, 403), exc


def test_another_areas_member_and_structure_cannot_be_taken_over(
    couch: Couch, world: tuple[Settings, Doc], tmp_path: Path
) -> None:
    s, _ = world
    assign(couch, s, "ana", NORTH)
    hijacked = {**family("f-s1", "s-n1"), "firstName": "HIJACKED", "dateEdited": "2099-01-01T00:00:00.000Z"}
    moved = structure("s-s1", NORTH)  # the south's structure, claimed for the north
    with Device(tmp_path / "ana", "ana") as ana:
        ana.put("area", hijacked)
        ana.put("area", moved)
        result = _push(ana, s, "ana", NORTH)
        assert result["docs_written"] == 2  # the door cannot see the main database: the worker must
        run_workers(couch, s)
        member = _living(couch, s.dbs.main, "f-s1")
        assert [m["firstName"] for m in member] == ["Somchai"]
        assert [m["attributes"]["residence"] for m in member] == ["s-s1"]
        place = _living(couch, s.dbs.main, "s-s1")
        assert [p["properties"]["parentId"] for p in place] == [SOUTH]
        refused = _refused(couch, s)
        assert "belongs to oa-south on the server" in refused["f-s1"]["error"]
        assert "belongs to oa-south on the server" in refused["s-s1"]["error"]
        assert refused["f-s1"]["doc"]["firstName"] == "HIJACKED"  # kept, never lost
        # the south's database never saw them; the north's no longer holds them, and the device learns so
        assert [d["firstName"] for d in _living(couch, s.dbs.area(SOUTH), "f-s1")] == ["Somchai"]
        assert _living(couch, s.dbs.area(NORTH), "f-s1") == []
        _pull(ana, s, "ana", NORTH)
        assert "f-s1" not in {d["_id"] for d in ana.docs("area")}


def test_plans_tasks_and_jurisdictions_cannot_be_turned_into_clients(
    couch: Couch, world: tuple[Settings, Doc], tmp_path: Path
) -> None:
    s, plan = world
    assign(couch, s, "ana", NORTH)
    with Device(tmp_path / "ana", "ana") as ana:
        _pull(ana, s, "ana", NORTH)
        task = next(d for d in ana.docs("area") if d.get("type") == "Task")
        targets = {str(plan["_id"]): plan, str(task["_id"]): task, NORTH: ana.get("area", NORTH)}
        # over the copy the device holds: the door refuses a change of type
        for doc_id, doc in targets.items():
            ana.put("area", {**doc, **family(doc_id, "s-n1"), "_rev": doc["_rev"]})
        result = _push(ana, s, "ana", NORTH)
        reasons = " | ".join(str(e["message"]) for e in result["errors"])
        assert result["doc_write_failures"] == 3, reasons
        assert "plans and jurisdictions are written on the server only" in reasons
        assert "a document keeps its type (Task)" in reasons
    # as unrelated branches (no old document for the door to see): the worker refuses them
    before = {doc_id: (couch.get(s.dbs.main, doc_id) or {})["_rev"] for doc_id in targets}
    couch.bulk_docs(s.dbs.area(NORTH), [_branch(family(doc_id, "s-n1")) for doc_id in targets], new_edits=False)
    run_workers(couch, s)
    refused = _refused(couch, s)
    for doc_id in targets:
        leaves = _living(couch, s.dbs.main, doc_id)
        assert [leaf["_rev"] for leaf in leaves] == [before[doc_id]], doc_id
        assert leaves[0]["type"] != "Client"
        assert "type" in refused[doc_id]["error"]
        area_leaves = _living(couch, s.dbs.area(NORTH), doc_id)
        assert [leaf["type"] for leaf in area_leaves] == [targets[doc_id]["type"]], doc_id
    rows = couch.view(s.dbs.main, "fieldsync", "plans_by_status", reduce=False)
    assert str(plan["_id"]) in {str(r["id"]) for r in rows}


def test_a_forged_2099_clock_does_not_win_a_conflict(
    couch: Couch, world: tuple[Settings, Doc], tmp_path: Path
) -> None:
    s, _ = world
    assign(couch, s, "ana", NORTH)
    assign(couch, s, "cara", NORTH)
    with Device(tmp_path / "ana", "ana") as ana, Device(tmp_path / "cara", "cara") as cara:
        _pull(ana, s, "ana", NORTH)
        _pull(cara, s, "cara", NORTH)
        task_id = next(d["_id"] for d in ana.docs("area") if d.get("type") == "Task" and d.get("for") == "s-n1")
        # ana's phone claims 2099 and syncs first
        mine = ana.get("area", task_id)
        ana.put("area", {**mine, "status": "Completed", "businessStatus": "Not Sprayed",
                         "lastModified": "2099-12-31T23:59:59.000Z"})
        assert _push(ana, s, "ana", NORTH)["docs_written"] == 1
        run_workers(couch, s)
        # cara, offline on the older revision, sprays afterwards, with an honest clock
        theirs = cara.get("area", task_id)
        now = (datetime.now(UTC) + timedelta(seconds=1)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        cara.put("area", {**theirs, "status": "Completed", "businessStatus": "Sprayed", "lastModified": now})
        assert _push(cara, s, "cara", NORTH)["docs_written"] == 1
        run_workers(couch, s)
    leaves = _living(couch, s.dbs.main, task_id)
    assert [leaf["businessStatus"] for leaf in leaves] == ["Sprayed"]
    records = [r["doc"] for r in couch.view(s.dbs.audit, "audit", "by_kind", reduce=False, include_docs=True,
                                            startkey=["conflict"], endkey=["conflict", {}])]
    [record] = [r for r in records if r["docId"] == task_id]
    forged = next(t for t in record["times"].values() if t["value"] == "2099-12-31T23:59:59.000Z")
    assert forged["clamped"] is True and forged["seenAt"] < now


def test_checkpoints_are_out_of_the_users_reach(
    couch: Couch, world: tuple[Settings, Doc], tmp_path: Path
) -> None:
    s, _ = world
    assign(couch, s, "ana", NORTH)
    area_db = s.dbs.area(NORTH)
    as_ana = couch.as_user("ana", "ana-pw")
    far = couch.update_seq(area_db)
    far_seq = f"99999999{far}" if isinstance(far, int) else "99999999-" + str(far).split("-", 1)[-1]
    # ana writes every checkpoint name the workers ever used, in her own area's database
    for name in ("fieldsync-sync", "fieldsync-plans", "fieldsync-conflicts", f"fieldsync-sync@{area_db}"):
        as_ana.put_local(area_db, name, {"seq": far_seq, "processed": 0})
    with Device(tmp_path / "ana", "ana") as ana:
        ana.put("area", structure("s-after-lever", NORTH))
        assert _push(ana, s, "ana", NORTH)["docs_written"] == 1
    run_workers(couch, s)
    assert couch.get(s.dbs.main, "s-after-lever") is not None  # reached the main database all the same


def test_a_malformed_checkpoint_is_reset_with_a_warning_never_fatal(
    couch: Couch, world: tuple[Settings, Doc], tmp_path: Path
) -> None:
    s, _ = world
    assign(couch, s, "ana", NORTH)
    area_db = s.dbs.area(NORTH)
    run_workers(couch, s)
    # a checkpoint corrupted where only the workers write (the audit database): the server refuses it
    couch.put_local(s.dbs.audit, f"fieldsync-sync@{area_db}", {"seq": "garbage-!!", "processed": 3})
    with Device(tmp_path / "ana", "ana") as ana:
        ana.put("area", structure("s-after-reset", NORTH))
        assert _push(ana, s, "ana", NORTH)["docs_written"] == 1
    run_workers(couch, s)  # does not raise
    assert couch.get(s.dbs.main, "s-after-reset") is not None
    checkpoint = couch.get_local(s.dbs.audit, f"fieldsync-sync@{area_db}") or {}
    assert checkpoint["seq"] != "garbage-!!"
    assert "checkpoint reset" in str(checkpoint.get("lastError"))


def test_a_task_keeps_a_real_status_and_a_note_list(
    couch: Couch, world: tuple[Settings, Doc], tmp_path: Path
) -> None:
    s, _ = world
    assign(couch, s, "ana", NORTH)
    with Device(tmp_path / "ana", "ana") as ana:
        _pull(ana, s, "ana", NORTH)
        tasks = [d for d in ana.docs("area") if d.get("type") == "Task"]
        ana.put("area", {**tasks[0], "status": "Bogus"})
        ana.put("area", {**tasks[1], "status": "Completed", "note": "Jane Doe, 0812345678"})
        result = _push(ana, s, "ana", NORTH)
        reasons = " | ".join(str(e["message"]) for e in result["errors"])
        assert result["doc_write_failures"] == 2, reasons
        assert ": status: not a task status" in reasons and ": note: a list of annotations" in reasons
    # past the door, as a device's edit of the current revision: refused by the worker, the area restored
    current = couch.get(s.dbs.area(NORTH), str(tasks[0]["_id"])) or {}
    couch.put(s.dbs.area(NORTH), {**current, "status": "Bogus"})
    run_workers(couch, s)
    assert [t["status"] for t in _living(couch, s.dbs.main, str(tasks[0]["_id"]))] == ["Ready"]
    assert [t["status"] for t in _living(couch, s.dbs.area(NORTH), str(tasks[0]["_id"]))] == ["Ready"]
    assert "status: not a task status" in _refused(couch, s)[str(tasks[0]["_id"])]["error"]
    main = couch.get(s.dbs.main, str(tasks[0]["_id"])) or {}
    area = couch.get(s.dbs.area(NORTH), str(tasks[0]["_id"])) or {}
    assert main["_rev"] == area["_rev"]  # both converge on one revision with the server's content
