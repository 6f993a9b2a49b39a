"""The nodes of the 3-node Apache CouchDB cluster that ``scripts/test --cluster`` starts (``couchdb3 cluster``), for
the node-loss tests: stop one node, start it again, wait until the cluster is whole.

``scripts/test --cluster`` sets ``FIELDSYNC_TEST_COUCH_URL`` to every node (``http://u:p@n1,http://n2,http://n3``)
and ``FIELDSYNC_TEST_CLUSTER_DIR`` to the cluster's directory (``DIR/node1``.. each node's). Elsewhere the
``cluster`` fixture skips its test with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from workers.couch import Couch
from workers.errors import FieldsyncError
from workers.settings import Settings

COUCHDB3 = Path(__file__).resolve().parents[3] / "shared" / "couchdb" / "couchdb3"


@dataclass
class Cluster:
    root: Path
    settings: Settings

    @property
    def size(self) -> int:
        return len(self.settings.couch_nodes)

    def port(self, node: int) -> int:
        return int(urlsplit(self.settings.couch_nodes[node - 1]).port or 5984)

    def url(self, node: int) -> str:
        """Node ``node`` (1-based) as the only node of a URL without credentials."""
        return self.settings.couch_nodes[node - 1]

    def stop(self, node: int) -> None:
        subprocess.run([str(COUCHDB3), "stop", str(self.root / f"node{node}")], check=True, timeout=120)

    def start(self, node: int) -> None:
        user, password = self.settings.credentials or ("", "")
        subprocess.run([str(COUCHDB3), "start", str(self.root / f"node{node}"), str(self.port(node)), user, password],
                       check=True, timeout=180, stdout=subprocess.DEVNULL)
        self.wait_whole()

    def up(self, node: int) -> bool:
        try:
            Couch(self.url(node), self.settings.credentials, timeout=5, retries=0).request("GET", "_up")
            return True
        except FieldsyncError:  # any failure means: not up
            return False

    def wait_whole(self, timeout: float = 120) -> None:
        """Until every node answers and sees every other as connected."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.up(n) for n in range(1, self.size + 1)):
                membership = Couch(self.url(1), self.settings.credentials, timeout=5, retries=0).request(
                    "GET", "_membership")
                if len(membership.get("all_nodes", [])) == self.size:
                    return
            time.sleep(0.5)
        raise AssertionError(f"the cluster is not whole after {timeout} s")


def cluster_dir() -> Path | None:
    given = os.environ.get("FIELDSYNC_TEST_CLUSTER_DIR")
    return Path(given) if given else None


@pytest.fixture()
def cluster(base_settings: Settings) -> Iterator[Cluster]:
    """The cluster of ``scripts/test --cluster``; every node is running again after the test, whatever happens."""
    root = cluster_dir()
    if root is None or len(base_settings.couch_nodes) < 3:
        pytest.skip("needs a 3-node CouchDB cluster: scripts/test --cluster")
    nodes = Cluster(root, base_settings)
    nodes.wait_whole()
    try:
        yield nodes
    finally:
        for node in range(1, nodes.size + 1):
            if not nodes.up(node):
                nodes.start(node)


def events(log: str, name: str) -> list[dict[str, object]]:
    """The JSON log lines of ``log`` whose event is ``name``."""
    out = []
    for line in log.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == name:
                out.append(entry)
    return out
