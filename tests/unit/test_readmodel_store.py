"""The read model's storage (SQLite, no network): what it indexes, transactions, rebuild triggers."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from workers.readmodel.store import CorruptIndex, Store, refs_of

Doc = dict[str, Any]

DOCS: list[Doc] = [
    {"_id": "d", "_rev": "1-a", "type": "Feature", "jurisdiction": True, "properties": {}},
    {"_id": "oa", "_rev": "1-a", "type": "Feature", "jurisdiction": True, "properties": {"parentId": "d"}},
    {"_id": "s1", "_rev": "1-a", "type": "Feature", "properties": {"parentId": "oa"}},
    {"_id": "f1", "_rev": "1-a", "type": "Client", "baseEntityId": "f1", "lastName": "Family",
     "attributes": {"residence": "s1"}, "relationships": {"family": ["f1"]}},
    {"_id": "m1", "_rev": "1-a", "type": "Client", "baseEntityId": "m1", "lastName": "Doe",
     "attributes": {"residence": "s1"}, "relationships": {"family": ["f1"]}},
    {"_id": "t1", "_rev": "1-a", "type": "Task", "for": "s1", "groupIdentifier": "oa", "planIdentifier": "p"},
    {"_id": "e1", "_rev": "1-a", "type": "Event", "baseEntityId": "s1", "locationId": "oa"},
    {"_id": "p", "_rev": "1-a", "type": "Plan", "status": "active", "jurisdiction": [{"code": "d"}]},
    {"_id": "settings", "_rev": "1-a", "type": "settings"},
]


def test_refs_are_the_tagged_keys_of_each_kind() -> None:
    """What the index finds each document by (once the ``lookup/entities`` view's keys, which a Node run of
    that view's map function checked until the view was retired)."""
    expected = {
        "d": [],
        "oa": [("child", "d", "")],
        "s1": [("child", "oa", "")],
        "f1": [("residence", "s1", "")],  # a family: found at its structure, not as its own member
        "m1": [("member", "f1", "")],
        "t1": [("task-for", "s1", ""), ("task-group", "oa", "p")],
        "e1": [("event-entity", "s1", ""), ("event-location", "oa", "")],
        "p": [("plan", "active", "d")],
        "settings": [],
    }
    assert {doc["_id"]: refs_of(doc) for doc in DOCS} == expected
    # a task without a jurisdiction or plan is still listed (under empty keys); a head of family is at home
    assert refs_of({"_id": "t", "type": "Task"}) == [("task-group", "", "")]
    head = {"_id": "h", "type": "Client", "baseEntityId": "h", "lastName": "Doe", "attributes": {"residence": "s"},
            "relationships": {"family_head": ["f"], "family": ["f"]}}
    assert refs_of(head) == [("residence", "s", ""), ("member", "f", "")]


def test_apply_reads_and_deletes(tmp_path: Path) -> None:
    store = Store(tmp_path / "rm.sqlite")
    assert store.apply(DOCS, seq="9-x") == 8  # settings is not indexed
    assert store.seq == "9-x"
    assert [d["_id"] for d in store.by_key("child", ["oa"])["oa"]] == ["s1"]
    assert [d["_id"] for d in store.by_key("residence", ["s1"])["s1"]] == ["f1"]
    assert [d["_id"] for d in store.by_key("member", ["f1"])["f1"]] == ["m1"]
    assert [d["_id"] for d in store.by_key("task-group", ["oa"], "p")["oa"]] == ["t1"]
    assert store.by_key("task-group", ["oa"], "q")["oa"] == []
    assert store.keys_of("task-group", "p") == ["oa"] and store.keys_of("child") == ["d", "oa"]
    assert store.get("t1", "Task") is not None and store.get("t1", "Client") is None
    # a move replaces the keys; a deletion removes them
    store.apply([{**DOCS[2], "_rev": "2-b", "properties": {"parentId": "d"}}, {"_id": "t1", "_deleted": True}])
    assert store.by_key("child", ["oa"])["oa"] == [] and [d["_id"] for d in store.by_key("child", ["d"])["d"]] == [
        "oa", "s1"]
    assert store.get("t1") is None and store.by_key("task-for", ["s1"])["s1"] == []
    assert store.revs(["s1", "t1", "nope"]) == {"s1": "2-b"}
    store.close()


def test_a_batch_and_its_position_commit_together(tmp_path: Path) -> None:
    store = Store(tmp_path / "rm.sqlite")
    store.apply(DOCS[:2], seq=2)
    with pytest.raises(RuntimeError), store.batch():
        store.apply(DOCS[2:], seq=9)
        raise RuntimeError("killed half way")
    assert store.seq == 2 and store.get("s1") is None  # neither the documents nor the position
    store.close()
    reopened = Store(tmp_path / "rm.sqlite")
    assert reopened.seq == 2 and reopened.count() == 2


def test_a_damaged_file_is_refused_and_can_be_discarded(tmp_path: Path) -> None:
    path = tmp_path / "rm.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CorruptIndex):
        Store(path)
    Store.discard(path)
    assert Store(path).count() == 0
    assert path.stat().st_mode & 0o077 == 0


def test_a_file_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    """Version 1 kept an index of refs by document id; version 2 finds a document's old refs from its old body.
    A version-1 file is refused (the read model then rebuilds it), never used with the other's assumptions."""
    path = tmp_path / "rm.sqlite"
    store = Store(path)
    store.apply(DOCS, seq=1)
    store.set_meta({"schema": "1"})
    store.close()
    with pytest.raises(CorruptIndex, match="schema 1"):
        Store(path)


def test_every_key_of_a_changed_document_is_dropped(tmp_path: Path) -> None:
    """A document's old keys are found from its old body: each is dropped when it changes, none is left."""
    store = Store(tmp_path / "rm.sqlite")
    store.apply(DOCS)
    member = {**DOCS[4], "_rev": "2-b", "relationships": {"family": ["f2", "f3"]}}
    event = {**DOCS[6], "_rev": "2-b", "baseEntityId": "s9", "locationId": "oa2"}
    store.apply([member, event, {"_id": "p", "_rev": "2-b", "type": "settings"}])
    assert store.by_key("member", ["f1", "f2", "f3"]) == {"f1": [], "f2": [member], "f3": [member]}
    assert store.by_key("event-entity", ["s1"])["s1"] == [] and store.by_key("event-location", ["oa"])["oa"] == []
    assert store.by_key("event-location", ["oa2"])["oa2"] == [event]
    assert store.keys_of("plan") == [] and store.get("p") is None  # no longer a plan: gone with its keys
    rows = store._db.execute("SELECT tag, k1, k2, id FROM refs ORDER BY id, tag").fetchall()
    assert sorted(rows) == sorted((*ref, str(d["_id"])) for d in [*DOCS[:4], member, DOCS[5], event]
                                  for ref in refs_of(d))
    store.close()


def test_a_late_answer_never_rolls_the_index_back(tmp_path: Path) -> None:
    """What the worker remembers from a ``_bulk_docs`` answer may reach the index after the feed brought the
    same revision or a later one (an activation's writer threads): the index keeps the later one."""
    store = Store(tmp_path / "rm.sqlite")
    task = DOCS[5]
    store.apply([{**task, "_rev": "2-feed", "status": "Completed", "for": "s2"}], seq=3)
    assert store.apply([task], newer_only=True) == 0  # 1-a: older than what the feed brought
    assert store.revs(["t1"]) == {"t1": "2-feed"}
    assert [d["_id"] for d in store.by_key("task-for", ["s2"])["s2"]] == ["t1"]
    assert store.by_key("task-for", ["s1"])["s1"] == []
    # a newer revision, or one the index does not hold, is taken (with its keys)
    assert store.apply([{**task, "_rev": "3-mine"}, DOCS[6]], newer_only=True) == 2
    assert store.revs(["t1", "e1"]) == {"t1": "3-mine", "e1": "1-a"}
    assert [d["_id"] for d in store.by_key("task-for", ["s1"])["s1"]] == ["t1"]
    assert store.by_key("task-for", ["s2"])["s2"] == []
    assert store.seq == 3
    store.close()


def test_threads_write_on_connections_of_their_own(tmp_path: Path) -> None:
    """An activation's writer threads remember on their own SQLite connections while the owner reads and
    applies the feed: every write lands, none is lost to a shared transaction."""
    path = tmp_path / "rm.sqlite"
    owner = Store(path)
    stores = [Store(path) for _ in range(2)]
    done: list[int] = []

    def write(n: int) -> None:
        for i in range(20):
            docs = [{"_id": f"t{n}-{i}-{k}", "_rev": "1-a", "type": "Task", "for": f"e{n}", "groupIdentifier": "oa",
                     "planIdentifier": "p"} for k in range(25)]
            done.append(stores[n].apply(docs, newer_only=True))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for i in range(20):
        owner.apply([{**DOCS[2], "_rev": f"{i + 2}-f"}], seq=i)
    for thread in threads:
        thread.join()
    assert sum(done) == 1000 and owner.count("Task") == 1000 and owner.seq == 19
    for store in (owner, *stores):
        store.close()


def test_reads_are_in_id_order_whatever_order_sqlite_walks(tmp_path: Path) -> None:
    """``by_key`` gives each key's documents in id order: read in the primary key's order where the tag has no
    second key, sorted across plans where a read of a jurisdiction's tasks names none."""
    store = Store(tmp_path / "rm.sqlite")
    ids = ["s9", "s1", "s5", "s3"]
    store.apply([{"_id": i, "_rev": "1-a", "type": "Feature", "properties": {"parentId": "oa"}} for i in ids])
    tasks = [("t4", "p"), ("t1", "q"), ("t3", "p"), ("t2", "q")]
    store.apply([{"_id": t, "_rev": "1-a", "type": "Task", "for": "s1", "groupIdentifier": "oa",
                  "planIdentifier": p} for t, p in tasks])
    assert [d["_id"] for d in store.by_key("child", ["zz", "oa"])["oa"]] == sorted(ids)
    assert [d["_id"] for d in store.by_key("task-group", ["oa"])["oa"]] == ["t1", "t2", "t3", "t4"]
    assert [d["_id"] for d in store.by_key("task-group", ["oa"], "p")["oa"]] == ["t3", "t4"]
    assert [d["_id"] for d in store.by_key("task-for", ["s1"])["s1"]] == ["t1", "t2", "t3", "t4"]
