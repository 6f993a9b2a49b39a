"""The server as an attacker sees it: plain HTTP, no fieldsync client, on every server the suite runs against.

Two field users, ``ana`` and ``ben``, each with a meta database only they (and admins) may use; a secret in
ana's meta database and one in the main database. Every attack must fail (its status, and nothing leaked or
changed afterwards); the legitimate paths next to them must still work. The embedded server answers what Apache
CouchDB 3.5 answers (its guard: ``server/guard.js``); where the two differ in the exact code, the test accepts
CouchDB's answer and the embedded one and checks the effect.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import stat
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from workers import embedded, provision
from workers.couch import Couch
from workers.settings import Settings

REFUSED = (401, 403)
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Answer:
    status: int
    text: str
    headers: Message

    def json(self) -> Any:
        return json.loads(self.text)


def http(method: str, url: str, *, auth: tuple[str, str] | None = None, body: Any = None,
         headers: dict[str, str] | None = None, timeout: float = 30) -> Answer:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return Answer(response.status, response.read().decode("utf-8", "replace"), response.headers)
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read().decode("utf-8", "replace"), error.headers)


@dataclass
class World:
    s: Settings
    url: str
    admin: tuple[str, str]
    ana: tuple[str, str]
    ben: tuple[str, str]
    ana_meta: str
    ben_meta: str
    secret: str
    main_secret: str

    def users_doc(self, name: str) -> str:
        return f"{self.url}/_users/org.couchdb.user:{name}"


@pytest.fixture()
def world(couch: Couch, initialised: Settings) -> World:
    s = initialised
    tag = uuid.uuid4().hex[:8]
    ana, ben = (f"ana{tag}", f"pw-a-{tag}"), (f"ben{tag}", f"pw-b-{tag}")
    provision.add_user(couch, s, ana[0], ana[1], ["team-north"])
    provision.add_user(couch, s, ben[0], ben[1], [])
    secret, main_secret = f"ana-secret-{tag}", f"main-secret-{tag}"
    couch.put(s.dbs.user_meta(ana[0]), {"_id": "secret-note", "note": secret})
    couch.put(s.dbs.main, {"_id": "secret-main", "note": main_secret})
    creds = s.credentials
    assert creds is not None
    return World(s, s.couch_url, creds, ana, ben, s.dbs.user_meta(ana[0]), s.dbs.user_meta(ben[0]), secret,
                 main_secret)


def _refused_without_leak(answer: Answer, *secrets: str, codes: tuple[int, ...] = REFUSED) -> None:
    assert answer.status in codes, (answer.status, answer.text[:300])
    for secret in secrets:
        assert secret not in answer.text
    assert "derived_key" not in answer.text and '"salt"' not in answer.text


def _read_attempts(url: str, db: str, doc_id: str) -> list[tuple[str, str, Any]]:
    base = f"{url}/{db}"
    return [
        ("POST", f"{base}/_find", {"selector": {}}),
        ("POST", f"{base}/_explain", {"selector": {}}),
        ("POST", f"{base}/_bulk_get", {"docs": [{"id": doc_id}]}),
        ("POST", f"{base}/_all_docs", {"include_docs": True}),
        ("GET", f"{base}/_all_docs?include_docs=true", None),
        ("POST", f"{base}/_all_docs?include_docs=true", {"keys": [doc_id]}),
        ("GET", f"{base}/_changes?include_docs=true", None),
        ("POST", f"{base}/_changes?include_docs=true", {}),
        ("GET", f"{base}/_changes?feed=longpoll&include_docs=true&since=0", None),
        ("GET", f"{base}/_index", None),
        ("GET", f"{base}/_design_docs", None),
        ("GET", f"{base}/{doc_id}", None),
        ("GET", f"{base}/{doc_id}?revs=true&open_revs=all", None),
        ("GET", f"{base}/_local/fieldsync-checkpoint", None),
        ("POST", f"{base}/_revs_diff", {doc_id: ["1-x"]}),
        ("POST", f"{base}/_missing_revs", {doc_id: ["1-x"]}),
        ("GET", f"{base}/_security", None),
        ("GET", f"{base}", None),
        ("GET", f"{base}/_design/fieldsync", None),
        ("GET", f"{base}/_design/fieldsync/_view/tasks_by_plan_status", None),
        ("GET", f"{base}/_design/fieldsync/_info", None),
    ]


def test_anonymous_and_other_users_read_no_database(world: World) -> None:
    w = world
    targets = [(w.ana_meta, "secret-note", w.secret), (w.s.dbs.main, "secret-main", w.main_secret)]
    for db, doc_id, secret in targets:
        for method, url, body in _read_attempts(w.url, db, doc_id):
            anonymous = http(method, url, body=body)
            _refused_without_leak(anonymous, secret, codes=(401,))
            other = http(method, url, body=body, auth=w.ben)
            _refused_without_leak(other, secret, codes=(403,))
    # ana is not a member of the main database either
    _refused_without_leak(http("POST", f"{w.url}/{w.s.dbs.main}/_find", body={"selector": {}}, auth=w.ana),
                          w.main_secret, codes=(403,))
    # the legitimate path: ana reads her own database every way
    found = http("POST", f"{w.url}/{w.ana_meta}/_find", body={"selector": {}}, auth=w.ana)
    assert found.status == 200 and w.secret in found.text
    bulk = http("POST", f"{w.url}/{w.ana_meta}/_bulk_get", body={"docs": [{"id": "secret-note"}]}, auth=w.ana)
    assert bulk.status == 200 and w.secret in bulk.text
    changes = http("GET", f"{w.url}/{w.ana_meta}/_changes?include_docs=true", auth=w.ana)
    assert changes.status == 200 and w.secret in changes.text


def test_members_cannot_write_design_documents_or_run_admin_operations(world: World, couch: Couch) -> None:
    w = world
    db = f"{w.url}/{w.ana_meta}"
    before = sorted(r["id"] for r in couch.all_docs(w.ana_meta, startkey="_design/", endkey="_design0"))
    attempts = [
        ("POST", f"{db}/_index", {"index": {"fields": ["note"]}, "ddoc": "evil-index"}),
        ("PUT", f"{db}/_design/evil", {"views": {"all": {"map": "function (d) { emit(d._id, d); }"}}}),
        ("PUT", f"{db}/innocent", {"_id": "_design/evil-body", "views": {}}),
        ("POST", db, {"_id": "_design/evil-post", "views": {}}),
        ("PUT", f"{db}/_design%2Fevil-encoded", {"views": {}}),
        ("PUT", f"{db}/%5Fdesign%2Fevil-encoded2", {"views": {}}),
    ]
    for who in (None, w.ben, w.ana):
        for method, url, body in attempts:
            answer = http(method, url, body=body, auth=who)
            assert answer.status >= 400, (who, method, url, answer.status, answer.text[:200])
        bulk = http("POST", f"{db}/_bulk_docs", body={"docs": [{"_id": "_design/evil-bulk", "views": {}}]}, auth=who)
        assert bulk.status in (*REFUSED, 201), bulk.text
        if bulk.status == 201:  # CouchDB answers per document
            assert all("error" in row for row in bulk.json())
        for endpoint, codes in (("_compact", REFUSED), ("_view_cleanup", REFUSED), ("_purge", (400, 401, 403))):
            answer = http("POST", f"{db}/{endpoint}", body={}, auth=who)
            assert answer.status in codes, (endpoint, answer.status, answer.text[:200])
    after = sorted(r["id"] for r in couch.all_docs(w.ana_meta, startkey="_design/", endkey="_design0"))
    assert after == before
    assert couch.get(w.ana_meta, "secret-note") is not None


def test_members_cannot_change_who_may_read(world: World, couch: Couch) -> None:
    """_security (kept by PouchDB Server as the local document _local/_security) stays the admin's."""
    w = world
    db = f"{w.url}/{w.ana_meta}"
    security = couch.get_security(w.ana_meta)
    open_to_all = {"admins": {"names": [w.ana[0]], "roles": []}, "members": {"names": [], "roles": []}}
    # PouchDB Server keeps it as a local document, which a member can read: its _rev makes a write an update
    current = http("GET", f"{db}/_local/_security", auth=w.ana)
    rev = {"_rev": current.json()["_rev"]} if current.status == 200 else {}
    lever = {"_id": "_local/_security", **rev, "security": open_to_all}
    multipart = (b'--fs\r\nContent-Type: application/json\r\n\r\n' + json.dumps(lever).encode()
                 + b'\r\n--fs--\r\n')
    attempts: list[tuple[str, str, Any, dict[str, str]]] = [
        ("PUT", f"{db}/_security", open_to_all, {}),
        ("PUT", f"{db}/_local/_security", {**rev, "security": open_to_all}, {}),
        ("PUT", f"{db}/_local%2F_security", {**rev, "security": open_to_all}, {}),
        ("PUT", f"{db}/%5Flocal%2F_security", {**rev, "security": open_to_all}, {}),
        ("PUT", f"{db}/lever?id=_local/_security", {**rev, "security": open_to_all}, {}),
        ("PUT", f"{db}/_local/lever?id=_local/_security", {**rev, "security": open_to_all}, {}),
        ("PUT", f"{db}/lever2", lever, {}),
        ("PUT", f"{db}/_local/lever3", lever, {}),
        ("POST", db, lever, {}),
        ("POST", f"{db}/_bulk_docs", {"docs": [lever]}, {}),
        ("POST", f"{db}/_bulk_docs", {"docs": [lever], "new_edits": False}, {}),
        ("PUT", f"{db}/lever4", multipart, {"Content-Type": 'multipart/related; boundary="fs"'}),
        ("PUT", f"{db}/_local/lever5", multipart, {"Content-Type": 'multipart/related; boundary="fs"'}),
    ]
    for who in (w.ana, w.ben, None):
        for method, url, body, headers in attempts:
            try:
                http(method, url, body=body, auth=who, headers=headers, timeout=10)
            except TimeoutError:
                # CouchDB 3.5 waits for more of this multipart body from a member; the write never happens
                assert "multipart" in headers.get("Content-Type", ""), (method, url)
            assert couch.get_security(w.ana_meta) == security, (who, method, url)
    # a document of ana's own, then copied over the security object
    http("PUT", f"{db}/_local/carrier", body={"security": open_to_all}, auth=w.ana)
    destination = "_local/_security" + (f"?rev={rev['_rev']}" if rev else "")
    http("COPY", f"{db}/_local%2Fcarrier", auth=w.ana, headers={"Destination": destination})
    assert couch.get_security(w.ana_meta) == security
    # whatever each server answered, nobody else got in and ana did not become the database's admin
    _refused_without_leak(http("GET", f"{db}/_all_docs?include_docs=true", auth=w.ben), w.secret, codes=(403,))
    _refused_without_leak(http("GET", f"{db}/_all_docs?include_docs=true"), w.secret, codes=(401,))
    answer = http("PUT", f"{db}/_design/after", body={"views": {}}, auth=w.ana)
    assert answer.status in REFUSED
    # the legitimate path: a member keeps its own checkpoints in _local documents
    put = http("PUT", f"{db}/_local/device-checkpoint", body={"seq": "1"}, auth=w.ana)
    assert put.status == 201, put.text
    assert http("GET", f"{db}/_local/device-checkpoint", auth=w.ana).json()["seq"] == "1"


def test_users_database_reveals_no_password_hashes(world: World, couch: Couch) -> None:
    w = world
    stored = couch.get("_users", f"org.couchdb.user:{w.ana[0]}")
    assert stored is not None and stored.get("salt") and stored.get("derived_key")
    leaks = (stored["salt"], stored["derived_key"])
    users = f"{w.url}/_users"
    ana_id = f"org.couchdb.user:{w.ana[0]}"
    attempts = [
        ("POST", f"{users}/_find", {"selector": {}}),
        ("POST", f"{users}/_find", {"selector": {"name": w.ana[0]}, "fields": ["salt", "derived_key"]}),
        ("POST", f"{users}/_explain", {"selector": {}}),
        ("GET", f"{users}/_all_docs?include_docs=true", None),
        ("POST", f"{users}/_all_docs", {"include_docs": True}),
        ("GET", f"{users}/_changes?include_docs=true", None),
        ("POST", f"{users}/_bulk_get", {"docs": [{"id": ana_id}]}),
        ("GET", f"{users}/{ana_id}", None),
        ("GET", f"{users}/org.couchdb.user%3A{w.ana[0]}", None),
        ("GET", f"{users}/_design/_auth", None),
        ("GET", f"{users}", None),
        ("GET", f"{w.url}/%5Fusers/_all_docs?include_docs=true", None),
        ("POST", f"{users}/_revs_diff", {ana_id: ["1-x"]}),
    ]
    for who in (None, w.ben):
        for method, url, body in attempts:
            _refused_without_leak(http(method, url, body=body, auth=who), *leaks,
                                  codes=(401,) if who is None else (403, 401))
    # the legitimate path: ben logs in (Basic and a session cookie), and the cookie opens his own database
    session = http("GET", f"{w.url}/_session", auth=w.ben)
    assert session.status == 200 and session.json()["userCtx"]["name"] == w.ben[0]
    cookie = _login(w.url, w.ben)
    mine = http("GET", f"{w.url}/{w.ben_meta}", headers={"Cookie": f"AuthSession={cookie}"})
    assert mine.status == 200, mine.text


def test_no_one_grants_themselves_roles_or_edits_other_users(world: World, couch: Couch) -> None:
    w = world
    ben_doc = couch.get("_users", f"org.couchdb.user:{w.ben[0]}")
    ana_doc = couch.get("_users", f"org.couchdb.user:{w.ana[0]}")
    assert ben_doc is not None and ana_doc is not None
    promoted = {**ben_doc, "roles": ["team-north", "supervisor"]}
    attempts: list[tuple[str, str, Any, dict[str, str]]] = [
        ("PUT", w.users_doc(w.ben[0]), promoted, {}),
        ("PUT", w.users_doc(w.ben[0]), {**promoted, "password": w.ben[1]}, {}),
        ("POST", f"{w.url}/_users", promoted, {}),
        ("POST", f"{w.url}/_users/_bulk_docs", {"docs": [promoted]}, {}),
        ("PUT", w.users_doc(w.ana[0]), {**ana_doc, "password": "taken-over"}, {}),
        ("PUT", w.users_doc(w.ben[0]), {**ana_doc, "password": "taken-over"}, {}),
        ("DELETE", f"{w.users_doc(w.ana[0])}?rev={ana_doc['_rev']}", None, {}),
        ("COPY", w.users_doc(w.ben[0]), None, {"Destination": f"org.couchdb.user:{w.ana[0]}?rev={ana_doc['_rev']}"}),
    ]
    for method, url, body, headers in attempts:
        answer = http(method, url, body=body, auth=w.ben, headers=headers)
        assert answer.status in (*REFUSED, 404), (method, url, answer.status, answer.text[:200])
    assert provision.user_roles(couch, w.ben[0]) == []
    assert couch.get("_users", f"org.couchdb.user:{w.ana[0]}") == ana_doc
    assert http("GET", f"{w.url}/{w.ana_meta}/secret-note", auth=w.ana).status == 200  # her password still works
    assert http("GET", f"{w.url}/{w.ana_meta}/secret-note", auth=(w.ana[0], "taken-over")).status == 401
    # ben did not reach what team-north reaches
    assert http("GET", f"{w.url}/{w.ana_meta}", auth=w.ben).status == 403


def test_anonymous_sign_up_is_refused(world: World, couch: Couch) -> None:
    """CouchDB 3.5's _users is admin-only (and its _security cannot be edited); the embedded server refuses the
    same: fieldsync users are created by `fieldsync users add`, as an admin."""
    w = world
    for roles in (["team-north"], ["_admin"], []):
        name = f"mallory{uuid.uuid4().hex[:6]}"
        doc: dict[str, Any] = {"_id": f"org.couchdb.user:{name}", "name": name, "type": "user", "roles": roles,
                               "password": "pw"}
        answer = http("PUT", w.users_doc(name), body=doc)
        assert answer.status in REFUSED, answer.text
        answer = http("POST", f"{w.url}/_users", body=doc)
        assert answer.status in REFUSED, answer.text
        assert couch.get("_users", f"org.couchdb.user:{name}") is None
        assert http("GET", f"{w.url}/_session", auth=(name, "pw")).status == 401


def _login(url: str, who: tuple[str, str]) -> str:
    answer = http("POST", f"{url}/_session", body={"name": who[0], "password": who[1]})
    assert answer.status == 200, answer.text
    match = re.search(r"AuthSession=([^;]+)", answer.headers.get("Set-Cookie") or "")
    assert match, answer.headers
    return match.group(1)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _forged_cookies(url: str, admin: str, ben: tuple[str, str]) -> list[str]:
    now = f"{int(time.time()):X}".encode()
    real = _unb64url(_login(url, ben))
    _, stamp, mac = real.split(b":", 2)
    return [
        _b64url(admin.encode() + b":" + now + b":" + os.urandom(20)),  # any signature
        _b64url(admin.encode() + b":" + stamp + b":" + mac),  # ben's signature under the admin's name
        _b64url(admin.encode() + b":" + now + b":"),  # no signature at all
        _b64url(admin.encode() + b":FFFFFFFF:" + os.urandom(20)),  # far future
        _b64url(admin.encode()),  # a bare name
        "not-base64!",
    ]


def test_forged_session_cookies_are_anonymous(world: World, couch: Couch) -> None:
    w = world
    for cookie in _forged_cookies(w.url, w.admin[0], w.ben):
        headers = {"Cookie": f"AuthSession={cookie}"}
        session = http("GET", f"{w.url}/_session", headers=headers)
        assert session.status != 200 or session.json()["userCtx"]["name"] is None, session.text
        assert http("GET", f"{w.url}/_all_dbs", headers=headers).status in (400, 401)
        answer = http("DELETE", f"{w.url}/{w.ana_meta}", headers=headers)
        assert answer.status in (400, 401), answer.text
        _refused_without_leak(http("POST", f"{w.url}/{w.ana_meta}/_find", body={"selector": {}}, headers=headers),
                              w.secret, codes=(400, 401))
    assert couch.db_info(w.ana_meta) is not None
    # the legitimate path: ana's real cookie opens her database
    cookie = _login(w.url, w.ana)
    found = http("POST", f"{w.url}/{w.ana_meta}/_find", body={"selector": {}},
                 headers={"Cookie": f"AuthSession={cookie}"})
    assert found.status == 200 and w.secret in found.text


def test_wrong_credentials_are_refused(world: World) -> None:
    w = world
    for who in ((w.ana[0], "wrong"), (w.admin[0], "wrong"), ("nobody-at-all", "pw"), (w.ana[0], "")):
        answer = http("GET", f"{w.url}/{w.ana_meta}/secret-note", auth=who)
        _refused_without_leak(answer, w.secret, codes=(401,))
        assert http("GET", f"{w.url}/_all_dbs", auth=who).status == 401


def test_deleting_a_database_as_non_admin_fails_and_the_server_keeps_answering(world: World, couch: Couch) -> None:
    w = world
    forged = _forged_cookies(w.url, w.admin[0], w.ben)
    attackers: list[tuple[tuple[str, str] | None, dict[str, str]]] = [
        (None, {}), (w.ben, {}), (w.ana, {}), (None, {"Cookie": f"AuthSession={forged[0]}"}),
        (None, {"Cookie": f"AuthSession={forged[1]}"}), (w.ana, {"Cookie": f"AuthSession={forged[2]}"}),
    ]
    for _ in range(2):
        for who, headers in attackers:
            for db in (w.ana_meta, w.s.dbs.main, "_users", f"{w.ana_meta}?rev=1-x"):
                answer = http("DELETE", f"{w.url}/{db}", auth=who, headers=headers, timeout=15)
                assert answer.status in (400, 401, 403), (db, answer.status, answer.text[:200])
    # every later request is answered, promptly
    assert http("GET", f"{w.url}/", timeout=10).status == 200
    assert http("GET", f"{w.url}/{w.ana_meta}/secret-note", auth=w.ana, timeout=10).status == 200
    assert http("GET", f"{w.url}/{w.s.dbs.main}/secret-main", auth=w.admin, timeout=10).status == 200
    scratch = f"{w.s.db_prefix}-scratch"
    assert http("PUT", f"{w.url}/{scratch}", auth=w.admin, timeout=10).status in (201, 202)
    assert http("DELETE", f"{w.url}/{scratch}", auth=w.admin, timeout=10).status in (200, 202)
    assert couch.db_info(w.ana_meta) is not None and couch.db_info(w.s.dbs.main) is not None


def test_server_routes_are_for_admins(world: World) -> None:
    w = world
    routes = [
        ("GET", "/_all_dbs"), ("GET", "/_dbs_info"), ("GET", "/_config"), ("GET", "/_config/admins"),
        ("PUT", "/_config/admins/mallory"), ("GET", "/_node/_local/_config"),
        ("GET", "/_node/node1@127.0.0.1/_config/admins"), ("GET", "/_active_tasks"), ("GET", "/_log"),
        ("GET", "/_db_updates"), ("GET", "/_membership"), ("POST", "/_replicate"), ("POST", "/_restart"),
        ("GET", "/_scheduler/jobs"), ("GET", "/_replicator/_all_docs"), ("GET", "/_somewhere-new"),
        ("GET", f"/_node/node1@127.0.0.1/{w.ana_meta}/_all_docs?include_docs=true"),
        ("GET", f"/{w.ana_meta}/_all_docs?include_docs=true&x=/{w.ana_meta}/_design/fieldsync/_rewrite/x"),
        ("GET", f"/{w.ana_meta}%3A/_all_docs?include_docs=true"),
        ("GET", f"//{w.ana_meta}/_all_docs?include_docs=true"),
        ("POST", f"/{w.ana_meta}/_temp_view"),
    ]
    for who in (None, w.ben):
        for method, path in routes:
            body = {"map": "function (d) { emit(d._id, d); }"} if path.endswith("_temp_view") else {}
            answer = http(method, w.url + path, auth=who, body=body if method in ("POST", "PUT") else None)
            # CouchDB lets a user start a replication as themselves; an empty one fails with 500
            allowed = (400, 401, 403, 404, 405, 410) + ((500,) if path == "/_replicate" and who else ())
            assert answer.status in allowed, (who, path, answer.status, answer.text[:200])
            assert w.secret not in answer.text and "pbkdf2" not in answer.text, path
    # what anyone may use
    assert http("GET", f"{w.url}/").status == 200
    assert http("GET", f"{w.url}/_uuids").status == 200
    assert http("GET", f"{w.url}/_session").status == 200


def test_server_files_are_private(base_settings: Settings, tmp_path: Path) -> None:
    if os.environ.get("FIELDSYNC_TEST_COUCH_URL"):
        pytest.skip("file modes are the embedded server's: an external server's data directory is not ours")
    _assert_private(base_settings.data_dir)
    # files an earlier version left readable are closed at the next start
    data = tmp_path / "data"
    (data / "db" / "old").mkdir(parents=True)
    for loose in (data / "log.txt", data / "db" / "old" / "000001.log"):
        loose.write_text("old\n")
        loose.chmod(0o644)
    data.chmod(0o755)
    (data / "db").chmod(0o755)
    port = _free_port()
    settings = Settings.from_env({"FIELDSYNC_COUCH_URL": f"http://boss:s3cret-{port}@127.0.0.1:{port}",
                                  "FIELDSYNC_DATA_DIR": str(data)})
    embedded.start(settings)
    try:
        _assert_private(data)
    finally:
        embedded.stop(settings)


def _assert_private(data_dir: Path) -> None:
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    names = {p.name for p in data_dir.iterdir()}
    assert {"config.json", "db"} <= names
    paths = [data_dir / "config.json", data_dir / "log.txt", *(data_dir / "db").rglob("*")]
    for path in paths:
        if path.exists() and not path.is_symlink():
            assert path.stat().st_mode & 0o077 == 0, f"{path} is {oct(stat.S_IMODE(path.stat().st_mode))}"
    assert "pbkdf2" in (data_dir / "config.json").read_text()  # the file that holds the admin's hash


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
