"""Fixtures: one real embedded server for the whole run, on a free loopback port, in a temporary directory.

Set ``FIELDSYNC_TEST_COUCH_URL`` (admin credentials in the URL) to run the same suite against another server,
e.g. an Apache CouchDB 3 node: the contract suite is the same for every server the project supports.
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
from workers.couch import Couch
from workers.settings import Settings


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
        yield Settings.from_env({"FIELDSYNC_COUCH_URL": external, "FIELDSYNC_DATA_DIR": str(server_dir)})
        return
    password = secrets.token_urlsafe(12)
    url = f"http://test-admin:{password}@127.0.0.1:{_free_port()}"
    settings = Settings.from_env({"FIELDSYNC_COUCH_URL": url, "FIELDSYNC_DATA_DIR": str(server_dir)})
    embedded.start(settings)
    try:
        yield settings
    finally:
        embedded.stop(settings)


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
    env["FIELDSYNC_COUCH_URL"] = settings.admin_url()
    env["FIELDSYNC_DB_PREFIX"] = settings.db_prefix
    env["FIELDSYNC_DATA_DIR"] = str(settings.data_dir)
    env["FIELDSYNC_LOG_FORMAT"] = "json"
    return env
