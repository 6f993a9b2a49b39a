"""Conflicts made by real offline devices, resolved latest-wins, audited, reverted."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from demo.devices import Device
from workers import provision
from workers.conflicts import resolver
from workers.conflicts.resolver import ConflictResolver
from workers.couch import Couch
from workers.runner import Runner
from workers.settings import Settings


def _task(lastmod: str, status: str = "Ready", business: str = "Not Visited") -> dict[str, object]:
    return {"_id": "task-1", "type": "Task", "identifier": "task-1", "planIdentifier": "plan-1", "code": "IRS",
            "status": status, "businessStatus": business, "for": "structure-1", "lastModified": lastmod}


def _resolve(couch: Couch, settings: Settings) -> None:
    Runner(couch, settings, [ConflictResolver(couch, settings)], discover_every=0).run(until_idle=True)


def _two_devices_edit_offline(couch: Couch, settings: Settings, tmp_path: Path) -> None:
    couch.put(settings.dbs.main, _task("2026-11-20T08:00:00.000Z"))
    url = f"{settings.admin_url()}/{settings.dbs.main}"
    with Device(tmp_path / "a", "a") as a, Device(tmp_path / "b", "b") as b:
        a.pull("main", url)
        b.pull("main", url)
        # both offline: A edits later in the day, B earlier, but B syncs last
        doc_a = a.get("main", "task-1")
        a.put("main", {**doc_a, "status": "Completed", "businessStatus": "Sprayed",
                       "lastModified": "2026-11-21T10:00:00.000+02:00"})
        doc_b = b.get("main", "task-1")
        b.put("main", {**doc_b, "status": "Completed", "businessStatus": "Not Sprayed",
                       "lastModified": "2026-11-21T07:30:00.000Z"})
        assert a.push("main", url)["docs_written"] == 1
        assert b.push("main", url)["docs_written"] == 1


def test_latest_edit_wins_is_audited_and_can_be_reverted(couch: Couch, initialised: Settings, tmp_path: Path) -> None:
    s = initialised
    _two_devices_edit_offline(couch, s, tmp_path)
    before = couch.get(s.dbs.main, "task-1", conflicts=True)
    assert before is not None and len(before["_conflicts"]) == 1

    _resolve(couch, s)
    after = couch.get(s.dbs.main, "task-1", conflicts=True)
    assert after is not None and "_conflicts" not in after
    # 10:00+02:00 is 08:00Z, later than 07:30Z: A's edit wins even though B synced last
    assert after["businessStatus"] == "Sprayed"
    living = [leaf for leaf in couch.open_revs(s.dbs.main, "task-1") if not leaf.get("_deleted")]
    assert [leaf["_rev"] for leaf in living] == [after["_rev"]]
    [record] = resolver.list_resolutions(couch, s)
    assert record["docId"] == "task-1" and record["db"] == s.dbs.main
    assert [d["businessStatus"] for d in record["losers"]] == ["Not Sprayed"]
    assert record["rule"].startswith("latest-wins by lastModified")

    # running again (a replay, a restart) changes nothing
    rev = after["_rev"]
    _resolve(couch, s)
    assert couch.get(s.dbs.main, "task-1")["_rev"] == rev  # type: ignore[index]
    assert len(resolver.list_resolutions(couch, s)) == 1

    entry = resolver.revert(couch, s, record["_id"])
    reverted = couch.get(s.dbs.main, "task-1", conflicts=True)
    assert reverted is not None and reverted["businessStatus"] == "Not Sprayed" and "_conflicts" not in reverted
    assert entry["replaced"]["businessStatus"] == "Sprayed"
    assert resolver.revert(couch, s, record["_id"])["_id"] == entry["_id"]  # idempotent
    assert couch.get(s.dbs.main, "task-1")["_rev"] == reverted["_rev"]  # type: ignore[index]


def test_two_resolvers_at_once_resolve_once(couch: Couch, initialised: Settings, tmp_path: Path) -> None:
    s = initialised
    docs = []
    for i in range(40):
        base = {"_id": f"c-{i}", "type": "Client", "baseEntityId": f"c-{i}"}
        docs += [
            {**base, "_rev": "1-aaaa", "dateEdited": "2026-01-01T00:00:00Z", "firstName": "A",
             "_revisions": {"start": 1, "ids": ["aaaa"]}},
            {**base, "_rev": "1-bbbb", "dateEdited": "2026-01-02T00:00:00Z", "firstName": "B",
             "_revisions": {"start": 1, "ids": ["bbbb"]}},
            {**base, "_rev": "1-cccc", "dateEdited": "2025-12-31T00:00:00Z", "firstName": "C",
             "_revisions": {"start": 1, "ids": ["cccc"]}},
        ]
    couch.bulk_docs(s.dbs.main, docs, new_edits=False)
    threads = [threading.Thread(target=_resolve, args=(Couch.from_settings(s), s)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(40):
        doc = couch.get(s.dbs.main, f"c-{i}", conflicts=True, revs_info=True)
        assert doc is not None and "_conflicts" not in doc and doc["firstName"] == "B"
        # B's body, written once on top of the current winner: generation 2, one revision after it
        assert doc["_rev"].startswith("2-")
        assert len([leaf for leaf in couch.open_revs(s.dbs.main, f"c-{i}") if not leaf.get("_deleted")]) == 1
    records = resolver.list_resolutions(couch, s, limit=1000)
    assert sorted(r["docId"] for r in records) == sorted(f"c-{i}" for i in range(40))


def test_interaction_logs_in_meta_databases_are_left_to_the_summarizer(
    couch: Couch, initialised: Settings
) -> None:
    s = initialised
    provision.add_user(couch, s, "erin", "pw", ["chw"])
    db = s.dbs.user_meta("erin")
    base = {"_id": "interaction-2026-11-20-erin-dev1", "type": "interaction-log",
            "metadata": {"user": "erin", "deviceId": "dev1", "date": "2026-11-20", "version": "5.2.0"}}
    couch.bulk_docs(db, [
        {**base, "_rev": "1-aaaa", "sessions": [], "_revisions": {"start": 1, "ids": ["aaaa"]}},
        {**base, "_rev": "1-bbbb", "sessions": [], "_revisions": {"start": 1, "ids": ["bbbb"]}},
    ], new_edits=False)
    _resolve(couch, s)
    doc = couch.get(db, base["_id"], conflicts=True)
    assert doc is not None and doc["_conflicts"]


def test_a_feed_page_of_many_conflicts_is_settled_batch_after_batch(couch: Couch, initialised: Settings) -> None:
    """Batches of 3 documents, pages of 15 changes: the next batch's reads run while this one's writes do;
    every document is settled once, the later edit winning, and a replay writes nothing."""
    s = initialised.model_copy(update={"batch_size": 3})
    leaves: list[dict[str, object]] = []
    for n in range(11):
        base = {**_task("2026-11-20T08:00:00.000Z"), "_id": f"task-{n}", "identifier": f"task-{n}"}
        # two generation-1 leaves, as a replicator writes two devices' offline creations
        leaves.append({**base, "_rev": f"1-{n:02d}a", "businessStatus": "Sprayed",
                       "lastModified": f"2026-11-21T08:{n:02d}:00.000Z"})
        leaves.append({**base, "_rev": f"1-{n:02d}b", "businessStatus": "Not Sprayed",
                       "lastModified": f"2026-11-21T07:{n:02d}:00.000Z"})
        couch.put(s.dbs.main, {"_id": f"plain-{n}", "type": "Note"})  # changes without a conflict between them
    couch.bulk_docs(s.dbs.main, leaves, new_edits=False)

    _resolve(couch, s)
    for n in range(11):
        doc = couch.get(s.dbs.main, f"task-{n}", conflicts=True)
        assert doc is not None and "_conflicts" not in doc, doc
        assert doc["businessStatus"] == "Sprayed"  # the later edit, though "b" is the revision CouchDB shows
    records = resolver.list_resolutions(couch, s)
    assert sorted(r["docId"] for r in records) == sorted(f"task-{n}" for n in range(11))

    revs = {n: couch.get(s.dbs.main, f"task-{n}")["_rev"] for n in range(11)}  # type: ignore[index]
    _resolve(couch, s)
    assert {n: couch.get(s.dbs.main, f"task-{n}")["_rev"] for n in range(11)} == revs  # type: ignore[index]
    assert len(resolver.list_resolutions(couch, s)) == 11


def test_the_feed_s_echo_of_a_resolution_is_not_read_as_a_new_conflict(
    couch: Couch, initialised: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A resolution that keeps the revision CouchDB shows only deletes the other leaf: the feed then lists that
    revision beside the worker's tombstone. That echo is known as the worker's own and is not read again (no
    batch of leaves re-read to find nothing); a leaf a device adds afterwards is resolved as before."""
    db = initialised.dbs.main
    leaves: list[dict[str, object]] = []
    for n in range(6):
        base = {**_task("2026-11-20T08:00:00.000Z"), "_id": f"task-{n}", "identifier": f"task-{n}"}
        # "b" is the revision CouchDB shows; for even n it is also the later edit, which stays where it is
        later, earlier = ("b", "a") if n % 2 == 0 else ("a", "b")
        leaves.append({**base, "_rev": f"1-{n:02d}{later}", "businessStatus": "Sprayed",
                       "lastModified": "2026-11-21T08:00:00.000Z"})
        leaves.append({**base, "_rev": f"1-{n:02d}{earlier}", "businessStatus": "Not Sprayed",
                       "lastModified": "2026-11-21T07:00:00.000Z"})
    couch.bulk_docs(db, leaves, new_edits=False)
    worker = ConflictResolver(couch, initialised)
    with caplog.at_level(logging.INFO, logger="fieldsync.conflicts"):
        Runner(couch, initialised, [worker], discover_every=0).run(until_idle=True)
    resolved = [r.fields for r in caplog.records if r.getMessage() == "resolved"]  # type: ignore[attr-defined]
    assert sum(int(f["documents"]) for f in resolved) == 6
    assert all(int(f["documents"]) > 0 for f in resolved), resolved  # no batch made of the echo
    kept = couch.get(db, "task-0")
    assert kept is not None and kept["_rev"] == "1-00b" and kept["businessStatus"] == "Sprayed"

    # a device's new leaf beside the kept revision is a conflict again
    caplog.clear()
    couch.bulk_docs(db, [{**kept, "_rev": "2-ff", "_revisions": {"start": 2, "ids": ["ff", "00b"]},
                          "businessStatus": "Not Sprayed", "lastModified": "2026-11-21T09:00:00.000Z"}],
                    new_edits=False)
    couch.bulk_docs(db, [{**kept, "_rev": "2-ee", "_revisions": {"start": 2, "ids": ["ee", "00b"]},
                          "businessStatus": "Sprayed", "lastModified": "2026-11-21T08:30:00.000Z"}],
                    new_edits=False)
    with caplog.at_level(logging.INFO, logger="fieldsync.conflicts"):
        Runner(couch, initialised, [worker], discover_every=0).run(until_idle=True)
    doc = couch.get(db, "task-0", conflicts=True)
    assert doc is not None and "_conflicts" not in doc and doc["businessStatus"] == "Not Sprayed"


def test_a_leaf_the_feed_listed_is_read_again_until_it_can_be(
    couch: Couch, initialised: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """On a cluster the read of a document's leaves can lag the feed that listed them (the copies answering
    have yet to take one): read as it is, the document would look settled while it holds two leaves. A leaf
    that cannot be read yet is read again, a little later; one still unreadable after the wait is logged."""
    db = initialised.dbs.main
    base = {**_task("2026-11-20T08:00:00.000Z")}
    couch.bulk_docs(db, [{**base, "_rev": "1-aa"}], new_edits=False)
    late = {**base, "_rev": "1-bb", "businessStatus": "Sprayed"}
    writer = threading.Timer(0.3, lambda: couch.clone().bulk_docs(db, [late], new_edits=False))
    writer.start()
    try:
        leaves = resolver.read_leaves(couch, db, [("task-1", "1-aa"), ("task-1", "1-bb")])
    finally:
        writer.join()
    assert sorted(leaf["_rev"] for leaf in leaves) == ["1-aa", "1-bb"]

    with caplog.at_level(logging.WARNING, logger="fieldsync.conflicts"):
        leaves = resolver.read_leaves(couch, db, [("task-1", "1-aa"), ("task-1", "1-cc")], wait_s=0.5)
    assert [leaf["_rev"] for leaf in leaves] == ["1-aa"]
    [record] = [r for r in caplog.records if r.getMessage() == "leaves not readable"]
    assert record.fields["leaves"] == ["task-1 1-cc"]  # type: ignore[attr-defined]
