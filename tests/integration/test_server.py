"""The embedded server: start, stop, the guard, and its answers to anonymous clients."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from workers import embedded
from workers.couch import POUCHDB_SERVER, Couch
from workers.errors import EmbeddedServerError, Unauthorized
from workers.settings import Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_start_twice_and_stop_leaves_no_process(tmp_path: Path) -> None:
    env = dict(os.environ, FIELDSYNC_COUCH_URL=f"http://boss:s3cret@127.0.0.1:{_free_port()}",
               FIELDSYNC_DATA_DIR=str(tmp_path / "data"))
    first = _cli(["server", "start"], env)
    assert first.returncode == 0, first.stderr
    assert "s3cret" not in first.stdout + first.stderr
    pid = int((tmp_path / "data" / embedded.PID_FILE).read_text())
    try:
        second = _cli(["server", "start"], env)
        assert second.returncode == 2
        assert "already running" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        stopped = _cli(["server", "stop"], env)
    assert stopped.returncode == 0, stopped.stderr
    assert f"pid {pid}" in stopped.stdout
    assert not embedded.pid_alive(pid)  # gone, or a zombie its new parent has not reaped yet
    again = _cli(["server", "stop"], env)
    assert again.returncode == 0 and "no fieldsync server" in again.stdout


def test_generated_admin_is_kept_and_used(tmp_path: Path) -> None:
    env = dict(os.environ, FIELDSYNC_COUCH_URL=f"http://127.0.0.1:{_free_port()}",
               FIELDSYNC_DATA_DIR=str(tmp_path / "data"))
    started = _cli(["server", "start"], env)
    try:
        assert started.returncode == 0, started.stderr
        admin_file = tmp_path / "data" / "admin.json"
        assert admin_file.stat().st_mode & 0o077 == 0
        assert str(admin_file) in started.stdout
        # every other command finds the generated account by itself
        init = _cli(["init"], env)
        assert init.returncode == 0, init.stderr
    finally:
        _cli(["server", "stop"], env)


def test_port_taken_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = Settings.from_env({"FIELDSYNC_COUCH_URL": f"http://a:b@127.0.0.1:{port}",
                                      "FIELDSYNC_DATA_DIR": str(tmp_path)})
        with pytest.raises(EmbeddedServerError, match="already in use"):
            embedded.start(settings)


def test_not_loopback_is_refused(tmp_path: Path) -> None:
    settings = Settings.from_env({"FIELDSYNC_COUCH_URL": "http://a:b@10.1.2.3:5984",
                                  "FIELDSYNC_DATA_DIR": str(tmp_path)})
    with pytest.raises(EmbeddedServerError, match=r"127\.0\.0\.1 only"):
        embedded.start(settings)


def test_data_dir_not_writable_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings = Settings.from_env({"FIELDSYNC_COUCH_URL": f"http://a:b@127.0.0.1:{_free_port()}",
                                  "FIELDSYNC_DATA_DIR": str(blocker / "data")})
    with pytest.raises(EmbeddedServerError, match="not writable"):
        embedded.start(settings)


def test_anonymous_client_cannot_take_the_server_down(base_settings: Settings) -> None:
    anonymous = Couch(base_settings.couch_url, None, retries=0)
    for _ in range(3):
        with pytest.raises(Unauthorized):
            anonymous.request("PUT", "anonymous-db")
        with pytest.raises(Unauthorized):
            anonymous.all_dbs()
        with pytest.raises(Unauthorized):
            anonymous.request("DELETE", "_users")
    admin = Couch.from_settings(base_settings)
    assert "anonymous-db" not in admin.all_dbs()
    assert admin.session()["userCtx"]["name"] == base_settings.admin_user


def test_server_binds_loopback_only(base_settings: Settings) -> None:
    with open("/proc/net/tcp") as tcp:
        rows = tcp.read().splitlines()[1:]
    port_hex = f"{base_settings.port:04X}"
    listening = [r.split()[1] for r in rows if r.split()[1].endswith(":" + port_hex) and r.split()[3] == "0A"]
    assert listening == ["0100007F:" + port_hex]


def test_fauxton_is_served_and_data_still_needs_a_login(initialised: Settings, server_kind: str) -> None:
    base_settings = initialised
    if server_kind == "couchdb":
        try:
            urllib.request.urlopen(f"{base_settings.couch_url}/_utils/", timeout=30).close()
        except urllib.error.HTTPError as missing:
            if missing.code == 404:
                pytest.skip("couchdb: this CouchDB build has no Fauxton at /_utils/ (../shared/couchdb/couchdb3 "
                            "builds it with --disable-fauxton)")
            raise
    with urllib.request.urlopen(f"{base_settings.couch_url}/_utils/", timeout=30) as page:
        assert page.status == 200 and "text/html" in page.headers.get("content-type", "")
        assert b"<title>" in page.read()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base_settings.couch_url}/{base_settings.dbs.main}/_all_docs", timeout=30)
    assert refused.value.code in (401, 403)


def test_validation_applies_to_each_document_of_a_request_and_follows_design_changes(
        couch: Couch, settings: Settings, server_kind: str) -> None:
    """Each document of a ``_bulk_docs`` is validated against its own stored revision, and a changed
    ``validate_doc_update`` applies to later requests: on the embedded server from the next one (it reads a
    database's validation functions once per request: ``server/server.js``), on CouchDB once its cache of design
    documents has taken the change (``ddoc_cache``, a moment later: seen in CI)."""
    db = f"{settings.db_prefix}-validation"
    couch.create_db(db)
    first = {"_id": "_design/check", "validate_doc_update":
             "function (doc, old) { if (doc.bad) { throw({forbidden: 'bad ' + doc._id}); }"
             " if (old && old.locked) { throw({forbidden: 'locked ' + doc._id}); } }"}
    couch.put(db, first)
    couch.put(db, {"_id": "_design/other", "validate_doc_update":
                   "function (doc) { if (doc.size > 10) { throw({forbidden: 'too big ' + doc._id}); } }"})
    locked = {"_id": "locked", "locked": True}
    couch.put(db, locked)

    answers = couch.bulk_docs(db, [{"_id": "a"}, {"_id": "b", "bad": True}, {"_id": "c", "size": 11},
                                   {"_id": "d"}, dict(locked, note="edit")])
    assert [a.get("error") for a in answers] == [None, "forbidden", "forbidden", None, "forbidden"]
    assert [answers[i]["reason"] for i in (1, 2, 4)] == ["bad b", "too big c", "locked locked"]
    assert couch.get(db, "a") and couch.get(db, "d")
    assert couch.get(db, "b") is None and couch.get(db, "c") is None
    assert "note" not in (couch.get(db, "locked") or {})

    couch.put(db, dict(first, validate_doc_update=
                       "function (doc) { if (doc.other) { throw({forbidden: 'other ' + doc._id}); } }"))
    deadline, attempt = time.monotonic() + 30, 0
    while True:
        attempt += 1
        answers = couch.bulk_docs(db, [{"_id": f"b{attempt}", "bad": True}, {"_id": f"e{attempt}", "other": 1}])
        if answers[0].get("error") is None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [a.get("error") for a in answers] == [None, "forbidden"]
    assert answers[1]["reason"] == f"other e{attempt}"
    if server_kind == POUCHDB_SERVER:
        assert attempt == 1
