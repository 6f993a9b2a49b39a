"""Fixtures: one real embedded server for the whole run, on a free loopback port, in a temporary directory.

Set ``FIELDSYNC_TEST_COUCH_URL`` (admin credentials in the URL) to run the same suite against another server,
e.g. an Apache CouchDB 3 node (``scripts/test --couchdb`` starts one): the contract suite is the same for every
server the project supports.

``server_kind`` says which server the suite runs on (``couchdb`` or ``pouchdb-server``, from ``GET /``). A test
that cannot apply to one server says so with ``@pytest.mark.only_on("couchdb", reason="...")`` (or
``pytest.skip("...")`` in its body): it is skipped there with its reason printed, never silently.
"""

from __future__ import annotations

import os
import secrets
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers import embedded, provision
from workers.couch import COUCHDB, POUCHDB_SERVER, Couch
from workers.settings import Settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "only_on(kind, reason): run only on that kind of server (couchdb, pouchdb-server); skipped with the "
        "reason elsewhere",
    )


# The OpenSRP fixtures some tests read live beside the clone (../shared), not in it. A clone without them runs
# everything else and names each test (or test module) that needed them as skipped, with the reason.
SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "opensrp"
_NO_FIXTURES = f"needs the OpenSRP fixtures of ../shared beside the clone ({SHARED_FIXTURES} not found)"


def _missing_shared_fixture(text: str) -> bool:
    return not SHARED_FIXTURES.is_dir() and "FileNotFoundError" in text and "/shared/" in text


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and isinstance(collector, pytest.Module) and _missing_shared_fixture(str(report.longrepr)):
        report.outcome = "skipped"
        report.longrepr = (str(collector.path), 0, f"Skipped: {_NO_FIXTURES}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and call.excinfo is not None and call.excinfo.errisinstance(FileNotFoundError) \
            and _missing_shared_fixture(f"FileNotFoundError {call.excinfo.value}"):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {_NO_FIXTURES}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="session")
def base_settings(server_dir: Path) -> Iterator[Settings]:
    """Settings of a running server (started here, stopped at the end whatever happens)."""
    external = os.environ.get("FIELDSYNC_TEST_COUCH_URL")
    if external:
        settings = Settings.from_env({"FIELDSYNC_COUCH_URL": external, "FIELDSYNC_DATA_DIR": str(server_dir)})
        _SERVER_MEASURED.append(f"server: {Couch.from_settings(settings).describe()} at {settings.couch_url}")
        yield settings
        return
    password = secrets.token_urlsafe(12)
    url = f"http://test-admin:{password}@127.0.0.1:{_free_port()}"
    settings = Settings.from_env({"FIELDSYNC_COUCH_URL": url, "FIELDSYNC_DATA_DIR": str(server_dir)})
    embedded.start(settings)
    _SERVER_MEASURED.append(f"server: {Couch.from_settings(settings).describe()} (embedded) at {settings.couch_url}")
    try:
        yield settings
    finally:
        embedded.stop(settings)


_SERVER_MEASURED: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _SERVER_MEASURED:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def server_kind(base_settings: Settings) -> str:
    """``couchdb`` or ``pouchdb-server`` (the embedded server): the kind of server the suite runs on."""
    return Couch.from_settings(base_settings).server_kind()


@pytest.fixture(autouse=True)
def _only_on(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("only_on")
    if marker is None:
        return
    wanted = marker.args[0]
    if wanted not in (COUCHDB, POUCHDB_SERVER):
        raise pytest.UsageError(f"only_on: unknown server kind {wanted!r}")
    kind = request.getfixturevalue("server_kind")
    if kind != wanted:
        pytest.skip(f"{kind}: {marker.kwargs.get('reason') or 'only on ' + wanted}")


@pytest.fixture()
def settings(base_settings: Settings) -> Settings:
    """Settings with a database prefix of its own, so that each test starts from empty databases."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return base_settings.model_copy(update={"db_prefix": prefix})


@pytest.fixture()
def couch(settings: Settings) -> Couch:
    return Couch.from_settings(settings)


@pytest.fixture()
def initialised(couch: Couch, settings: Settings) -> Settings:
    provision.init(couch, settings)
    return settings


@pytest.fixture()
def cli_env(settings: Settings) -> dict[str, str]:
    """The environment a ``fieldsync`` subprocess needs to talk to the test server with the test prefix."""
    env = dict(os.environ)
    env["FIELDSYNC_COUCH_URL"] = settings.env_url()
    env["FIELDSYNC_DB_PREFIX"] = settings.db_prefix
    env["FIELDSYNC_DATA_DIR"] = str(settings.data_dir)
    env["FIELDSYNC_LOG_FORMAT"] = "json"
    return env
