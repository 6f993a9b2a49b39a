"""Failover between the nodes named in ``FIELDSYNC_COUCH_URL``, on any server: a node that refuses connections (a
loopback port nobody listens on) before the real server. The node-loss tests on a 3-node cluster are in
``test_node_loss.py``."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys

import pytest

from workers import provision
from workers.couch import Couch
from workers.errors import ServerUnreachable
from workers.settings import Settings


def _dead_node() -> str:
    with socket.socket() as sock:  # bound and closed again: nobody listens there
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _with_dead_first(settings: Settings) -> Settings:
    dead = _dead_node()
    return settings.model_copy(update={"couch_url": dead, "couch_nodes": [dead, *settings.couch_nodes]})


def test_a_dead_home_node_fails_over_at_once_and_logs_it(settings: Settings, caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    two = _with_dead_first(settings)
    couch = Couch.from_settings(two)
    caplog.set_level(logging.INFO, logger="fieldsync.couch")
    assert couch.server_info()  # the first attempt was refused, the second went to the live node
    provision.init(couch, two)
    assert couch.db_info(two.dbs.main) is not None
    failovers = [r for r in caplog.records if r.getMessage() == "failover"]
    assert len(failovers) == 1  # marked down once; later requests go straight to the live node
    fields = failovers[0].fields  # type: ignore[attr-defined]
    assert fields["from_node"] == two.couch_nodes[0] and fields["to_node"] == settings.couch_url
    assert couch.nodes.down() == [0]
    assert couch.clone().nodes is couch.nodes  # one view of the nodes' health per process


def test_fail_back_tries_home_again_after_the_delay(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    couch = Couch.from_settings(_with_dead_first(settings).model_copy(update={"failback_seconds": 0}))
    caplog.set_level(logging.INFO, logger="fieldsync.couch")
    for _ in range(3):
        couch.server_info()
    # with no delay, home is tried again before each request, refused, and left again
    assert sum(r.getMessage() == "failover" for r in caplog.records) == 3


def test_every_node_down_is_one_clear_error(settings: Settings) -> None:
    nodes = [_dead_node(), _dead_node()]
    couch = Couch(nodes, settings.credentials, retries=3, backoff=0.01)
    with pytest.raises(ServerUnreachable, match=r"cannot reach http://127\.0\.0\.1"):
        couch.server_info()


def test_commands_work_with_the_first_node_gone(settings: Settings, cli_env: dict[str, str]) -> None:
    env = dict(cli_env)
    env["FIELDSYNC_COUCH_URL"] = _with_dead_first(settings).env_url()
    for args in (["init"], ["status", "--json"]):
        done = subprocess.run([sys.executable, "-m", "workers.cli", *args], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
        assert any(e.get("event") == "failover" for e in events), done.stderr
        assert settings.admin_password is None or settings.admin_password.get_secret_value() not in done.stderr
    assert json.loads(done.stdout)
