"""The plan worker's read model against a real server: a new index is filled from a snapshot and follows the
feed; what changes during the snapshot is not missed; a kill half-way, a foreign, corrupt or outdated file
and a position the server refuses each end in an index equal to the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from test_follower import CountingCouch

from demo.synthetic import AreaSize, operational_areas
from workers.couch import Couch, Doc
from workers.readmodel.feed import INCARNATION, ReadModel
from workers.readmodel.lookup import IndexLookup
from workers.readmodel.store import Store
from workers.settings import Settings


def _seed(couch: Couch, db: str, seed: str = "rm", areas: int = 2, per_area: int = 40) -> list[Doc]:
    docs = list(operational_areas(seed, AreaSize(areas=areas, structures_per_area=per_area)))
    couch.save_many(db, [dict(d) for d in docs])
    return docs


def _as_in_db(couch: Couch, db: str) -> dict[str, str]:
    """id -> revision of every document of the database (design documents left out)."""
    rows = couch.all_docs(db, include_docs=False)
    return {r["id"]: r["value"]["rev"] for r in rows if not r["id"].startswith("_design/")}


def _as_indexed(model: ReadModel) -> dict[str, str]:
    rows = model.store._db.execute("SELECT id, rev FROM docs").fetchall()
    return {str(i): str(r) for i, r in rows}


class _Snapshotting:
    """The real server (every call goes to it), with something happening between the snapshot's pages: a real
    write by someone else after the first page, or the process killed before page ``fail_on_page``."""

    def __init__(self, base: Couch, db: str, write: list[Doc], fail_on_page: int | None = None) -> None:
        self._base, self._db, self._write, self._pages, self._fail = base, db, write, 0, fail_on_page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def all_docs(self, db: str, keys: Any = None, *, include_docs: bool = True, **params: Any) -> list[Doc]:
        if keys is None:
            self._pages += 1
            if self._pages == self._fail:
                raise KeyboardInterrupt("killed during the snapshot")
        rows = self._base.all_docs(db, keys, include_docs=include_docs, **params)
        if keys is None and self._pages == 1 and self._write:
            self._base.save_many(self._db, self._write)
            self._write = []
        return rows

    def get_many(self, db: str, ids: list[str], **params: Any) -> dict[str, Doc]:
        return self._base.get_many(db, ids, **params)


def _during(base: Couch, db: str, write: list[Doc], fail_on_page: int | None = None) -> Couch:
    return cast(Couch, _Snapshotting(base, db, write, fail_on_page))


def test_snapshot_then_feed_equals_the_database(couch: Couch, initialised: Settings, tmp_path: Path) -> None:
    db = initialised.dbs.main
    docs = _seed(couch, db)
    model = ReadModel(couch, db, tmp_path / "rm.sqlite")
    assert model.catch_up() >= len(docs) and model.rebuilt
    indexed = _as_indexed(model)
    assert indexed == {i: r for i, r in _as_in_db(couch, db).items() if i in indexed}
    assert len(indexed) == len(docs)
    # then the feed: an edit (a structure moved to the district) and a deletion
    structure = next(d for d in docs if d["type"] == "Feature" and not d.get("jurisdiction"))
    client = next(d for d in docs if d["type"] == "Client")
    moved = couch.get(db, structure["_id"])
    assert moved is not None
    moved["properties"]["parentId"] = docs[0]["_id"]
    couch.put(db, moved)
    gone = couch.get(db, client["_id"])
    assert gone is not None
    couch.save_many(db, [{"_id": gone["_id"], "_rev": gone["_rev"], "_deleted": True}])
    model.catch_up()
    assert _as_indexed(model) == {i: r for i, r in _as_in_db(couch, db).items() if i in _as_indexed(model)}
    assert client["_id"] not in _as_indexed(model)
    assert structure["_id"] in {d["_id"] for d in model.store.by_key("child", [docs[0]["_id"]])[docs[0]["_id"]]}
    model.close()


def test_a_write_during_the_snapshot_is_not_missed(couch: Couch, initialised: Settings, tmp_path: Path) -> None:
    db = initialised.dbs.main
    docs = _seed(couch, db, areas=1, per_area=500)  # 2,752 documents: two snapshot pages
    late = [dict(d) for d in _seed_docs("late")]
    edited = couch.get(db, docs[-1]["_id"])  # the last page: read after the concurrent write
    assert edited is not None
    edited["properties"]["status"] = "Inactive"
    model = ReadModel(_during(couch, db, [*late, edited]), db, tmp_path / "rm.sqlite")
    model.catch_up()
    in_db = _as_in_db(couch, db)
    assert _as_indexed(model) == {i: r for i, r in in_db.items() if i in _as_indexed(model)}
    assert {d["_id"] for d in late} <= set(_as_indexed(model))
    assert (model.store.get(docs[-1]["_id"]) or {}).get("properties", {}).get("status") == "Inactive"
    model.close()


def _seed_docs(seed: str) -> list[Doc]:
    return list(operational_areas(seed, AreaSize(areas=1, structures_per_area=3)))


def test_a_kill_during_the_snapshot_leaves_nothing_behind(couch: Couch, initialised: Settings,
                                                          tmp_path: Path) -> None:
    db = initialised.dbs.main
    docs = _seed(couch, db, areas=1, per_area=500)
    path = tmp_path / "rm.sqlite"
    killed = ReadModel(_during(couch, db, [], fail_on_page=2), db, path)
    try:
        killed.catch_up()
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the snapshot should have been interrupted")
    partial = set(_as_indexed(killed))
    killed.close()
    assert partial and Store(path).seq in (0, "0", None)  # the first page is in, no position
    # a document of the first page is deleted before the restart: the next snapshot must not keep it
    victim = couch.get(db, sorted(partial)[0])
    assert victim is not None
    couch.save_many(db, [{"_id": victim["_id"], "_rev": victim["_rev"], "_deleted": True}])
    model = ReadModel(couch, db, path)
    model.catch_up()
    indexed = _as_indexed(model)
    assert victim["_id"] not in indexed
    assert indexed == {i: r for i, r in _as_in_db(couch, db).items() if i in indexed}
    assert len(indexed) == len(docs) - 1
    model.close()


def test_foreign_corrupt_and_outdated_files_are_rebuilt(couch: Couch, initialised: Settings, tmp_path: Path) -> None:
    db, other = initialised.dbs.main, f"{initialised.db_prefix}-elsewhere"
    docs = _seed(couch, db)
    couch.create_db(other)
    _seed(couch, other, seed="elsewhere", areas=1, per_area=5)
    path = tmp_path / "rm.sqlite"
    # an index of another database under this one's path
    foreign = ReadModel(couch, other, path)
    foreign.catch_up()
    foreign.close()
    model = ReadModel(couch, db, path)
    model.catch_up()
    assert set(_as_indexed(model)) == {d["_id"] for d in docs}
    model.close()
    # a damaged file
    path.write_bytes(b"not a database" * 100)
    Path(f"{path}-wal").unlink(missing_ok=True)
    model = ReadModel(couch, db, path)
    model.catch_up()
    assert set(_as_indexed(model)) == {d["_id"] for d in docs}
    model.close()
    # the database deleted and created again under the same name (another incarnation), with other documents
    couch.delete_db(db)
    couch.create_db(db)
    fresh = _seed(couch, db, seed="again", areas=1, per_area=7)
    model = ReadModel(couch, db, path)
    model.catch_up()
    assert set(_as_indexed(model)) == {d["_id"] for d in fresh}
    assert couch.get_local(db, INCARNATION) is not None
    model.close()


def test_a_position_the_server_refuses_means_a_rebuild(couch: Couch, initialised: Settings, tmp_path: Path,
                                                        server_kind: str) -> None:
    db = initialised.dbs.main
    docs = _seed(couch, db)
    path = tmp_path / "rm.sqlite"
    model = ReadModel(couch, db, path)
    model.catch_up()
    # a stray row the database never had: only a rebuild removes it
    model.store.apply([{"_id": "stray", "_rev": "1-x", "type": "Feature", "properties": {}}])
    # CouchDB refuses a malformed position (400); the embedded server answers a position ahead of the database
    # with empty pages
    bad: Any = "999999999-g1AAAAB4eJzLYWBg" if server_kind == "couchdb" else 999_999_999
    model.store.apply([], seq=bad)
    model.close()
    model = ReadModel(couch, db, path)
    model.catch_up()
    assert set(_as_indexed(model)) == {d["_id"] for d in docs}
    assert model.store.seq != bad
    model.close()


def test_the_index_follows_the_followers_pages_and_reads_the_feed_itself_only_after_a_gap(
    couch: Couch, initialised: Settings, tmp_path: Path
) -> None:
    """The plan worker's follower hands the index every page it reads (``ReadModel.follow``): a page right
    after the last one is applied without a read of the feed of the index's own; after a gap (a page not
    handed over) the index reads the feed itself first, so the skipped change is not missed; a change listing
    several leaves is read from the server, whose winner the index then holds."""
    db = initialised.dbs.main
    s = initialised
    docs = _seed(couch, db, areas=1, per_area=20)
    counting = CountingCouch(s.couch_nodes, s.credentials)
    model = ReadModel(counting, db, tmp_path / "rm.sqlite")

    def page(since: Any) -> Any:
        return couch.changes(db, since, limit=10_000, include_docs=False, style="all_docs")

    def edit(doc_id: str) -> str:
        doc = couch.get(db, doc_id)
        assert doc is not None
        couch.put(db, {**doc, "edited": int(doc.get("edited", 0)) + 1})
        return str(doc["_id"])

    def as_in_db() -> dict[str, str]:  # what the index holds of each document (not the settings document)
        indexed = _as_indexed(model)
        return {k: v for k, v in _as_in_db(couch, db).items() if k in indexed}

    first = page(0)
    model.follow(0, first.results, first.last_seq)  # nothing followed yet: the index reads the feed first
    assert counting.reads > 0 and _as_indexed(model) == as_in_db()
    structures = [str(d["_id"]) for d in docs if d["type"] == "Feature" and not d.get("jurisdiction")]

    edit(structures[0])
    second = page(first.last_seq)
    before = counting.reads
    model.follow(first.last_seq, second.results, second.last_seq)
    assert counting.reads == before  # the next page: applied as it is, no read of the feed
    assert _as_indexed(model) == as_in_db()

    edit(structures[1])
    skipped = page(second.last_seq)  # read by the follower but never handed over
    edit(structures[2])
    fourth = page(skipped.last_seq)
    assert [c["id"] for c in fourth.results] == [structures[2]]
    model.follow(skipped.last_seq, fourth.results, fourth.last_seq)
    assert counting.reads > before  # a gap: the index read the feed itself
    assert _as_indexed(model) == as_in_db()  # structures[1]'s edit included

    # a second leaf, written as a replication would: the server's winner is the one with the greater revision id
    doc = couch.get(db, structures[3])
    assert doc is not None
    generation = int(str(doc["_rev"]).split("-")[0])
    branch = {**doc, "_rev": f"{generation}-ffffffffffffffffffffffffffffffff", "branch": True,
              "_revisions": {"start": generation, "ids": ["ffffffffffffffffffffffffffffffff"]}}
    couch.bulk_docs(db, [branch], new_edits=False)
    fifth = page(fourth.last_seq)
    assert len(fifth.results[-1]["changes"]) == 2
    model.follow(fourth.last_seq, fifth.results, fifth.last_seq)
    assert _as_indexed(model) == as_in_db()
    assert _as_indexed(model)[structures[3]] == f"{generation}-ffffffffffffffffffffffffffffffff"
    model.close()



def test_an_activations_read_ahead_holds_the_tasks_of_its_own_plan_only_when_asked(
    couch: Couch, initialised: Settings, tmp_path: Path
) -> None:
    """The read-ahead of a jurisdiction's tasks for an activation (``begin_jurisdiction``): of every plan, or
    of one plan only, whose tasks are then the only ones its reads answer with."""
    db = initialised.dbs.main
    tasks = [{"_id": f"{plan}-{n}", "type": "Task", "planIdentifier": plan, "groupIdentifier": "oa-1",
              "for": f"s-{n}", "code": "Spray", "status": "Ready"} for plan in ("plan-a", "plan-b") for n in range(3)]
    couch.save_many(db, [dict(t) for t in tasks])
    model = ReadModel(couch, db, tmp_path / "rm.sqlite")
    lookup = IndexLookup(model, fresh_per_jurisdiction=True)
    lookup.begin_jurisdiction("oa-1")
    assert lookup.task("plan-a-0") is not None and lookup.task("plan-b-0") is not None
    assert sorted(t["planIdentifier"] for t in lookup.tasks_for("s-1")) == ["plan-a", "plan-b"]
    lookup.begin_jurisdiction("oa-1", "plan-b")
    assert lookup.task("plan-a-0") is None and lookup.task("plan-b-0") is not None
    assert [t["_id"] for t in lookup.tasks_for("s-1")] == ["plan-b-1"]
    model.close()
