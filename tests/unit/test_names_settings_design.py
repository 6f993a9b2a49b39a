"""Database names, settings from the environment, and the design-document tree (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from couch_design.loader import design_docs_for, load_tree, retired_design_docs
from workers.dbnames import DbNames, escape, is_valid_db_name, unescape
from workers.errors import ConfigError
from workers.settings import Settings


@pytest.mark.parametrize("name", ["alice", "bob_2", "Jo.Smith", "amy@clinic.org", "Ünïcode name", "a(b)c", "x-y"])
def test_escape_is_valid_and_reversible(name: str) -> None:
    dbs = DbNames("fieldsync")
    db = dbs.user_meta(name)
    assert is_valid_db_name(db)
    assert dbs.user_of_meta(db) == name
    assert unescape(escape(name)) == name
    assert dbs.kind(db) == "user-meta"


def test_escape_is_injective_on_tricky_pairs() -> None:
    assert escape("a.b") != escape("a(2e)b")
    assert escape("A") != escape("a")


def test_kinds() -> None:
    dbs = DbNames("fs")
    assert [dbs.kind(n) for n in ("fs", "fs-audit", "fs-users-meta", dbs.area("J-1"), "other")] == [
        "main", "audit", "users-meta", "area", None]
    assert dbs.area_of(dbs.area("Zone.A")) == "Zone.A"


def test_settings_split_credentials_and_never_print_them() -> None:
    s = Settings.from_env({"FIELDSYNC_COUCH_URL": "http://adm%40x:p%3Ass@127.0.0.1:6000/"})
    assert s.couch_url == "http://127.0.0.1:6000" and s.credentials == ("adm@x", "p:ss")
    assert "p:ss" not in repr(s) and "p:ss" not in str(s.model_dump())
    assert s.port == 6000
    assert s.admin_url() == "http://adm%40x:p%3Ass@127.0.0.1:6000"


def test_bad_settings_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FIELDSYNC_BATCH_SIZE"):
        Settings.from_env({"FIELDSYNC_BATCH_SIZE": "0", "FIELDSYNC_DATA_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="FIELDSYNC_DB_PREFIX"):
        Settings.from_env({"FIELDSYNC_DB_PREFIX": "Bad Prefix", "FIELDSYNC_DATA_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="FIELDSYNC_COUCH_URL"):
        Settings.from_env({"FIELDSYNC_COUCH_URL": "ftp://x", "FIELDSYNC_DATA_DIR": str(tmp_path)})


def test_admin_file_is_used_without_url_credentials(tmp_path: Path) -> None:
    (tmp_path / "admin.json").write_text('{"user": "gen", "password": "pw"}')
    s = Settings.from_env({"FIELDSYNC_DATA_DIR": str(tmp_path)})
    assert s.credentials == ("gen", "pw")


def test_design_tree_builds_valid_design_docs() -> None:
    tree = load_tree()
    assert {"main", "audit", "any"} <= set(tree)
    for docs in tree.values():
        for ddoc in docs:
            assert ddoc["_id"].startswith("_design/")
            for name, view in ddoc.get("views", {}).items():
                assert view["map"].startswith("function"), name
                reduce = view.get("reduce")
                assert reduce is None or reduce in ("_count", "_sum", "_stats") or reduce.startswith("function")
    main_ids = [d["_id"] for d in design_docs_for("main")]
    assert main_ids[-1] == "_design/fieldsync-conflicts"  # the "any" documents come after the database's own
    # one design document indexed after every write of the main database (the analysts'); the operators'
    # conflicts view is indexed when queried; the plan worker reads its own index, no view
    assert set(main_ids) == {"_design/fieldsync", "_design/fieldsync-conflicts"}
    by_id = {d["_id"]: d for d in design_docs_for("main")}
    assert by_id["_design/fieldsync-conflicts"]["autoupdate"] is False
    assert "autoupdate" not in by_id["_design/fieldsync"]
    assert retired_design_docs("main") == ["_design/lookup"]


def test_a_ddoc_json_sets_top_level_fields_and_nothing_else(tmp_path: Path) -> None:
    folder = tmp_path / "main" / "d"
    (folder / "views" / "v").mkdir(parents=True)
    (folder / "views" / "v" / "map.js").write_text("function (doc) { emit(1); }")
    (folder / "ddoc.json").write_text('{"autoupdate": false}')
    assert load_tree(tmp_path)["main"][0]["autoupdate"] is False
    (folder / "ddoc.json").write_text('{"validate_doc_update": "function () {}"}')
    with pytest.raises(ValueError, match=r"ddoc\.json"):
        load_tree(tmp_path)


def test_loader_rejects_unknown_builtin(tmp_path: Path) -> None:
    view = tmp_path / "main" / "d" / "views" / "v"
    view.mkdir(parents=True)
    (view / "map.js").write_text("function (doc) { emit(1); }")
    (view / "reduce.js").write_text("_median")
    with pytest.raises(ValueError, match="_median"):
        load_tree(tmp_path)
