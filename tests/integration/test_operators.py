"""What operators see: bad documents parked with the reason while the worker goes on; status; metrics."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import urllib.request
from datetime import UTC, date, datetime

from demo.synthetic import AreaSize, operational_areas, uid
from workers.couch import Couch
from workers.evaluator.templates import new_plan_from_template
from workers.metrics import serve
from workers.registry import build
from workers.runner import Runner
from workers.settings import Settings


def _parked(couch: Couch, settings: Settings) -> list[dict[str, object]]:
    rows = couch.view(settings.dbs.audit, "audit", "by_kind", reduce=False, include_docs=True,
                      startkey=["parked"], endkey=["parked", {}])
    return [row["doc"] for row in rows]


def test_malformed_documents_are_parked_and_the_next_ones_processed(couch: Couch, initialised: Settings) -> None:
    s = initialised
    docs = list(operational_areas("ops", AreaSize(areas=1, structures_per_area=4)))
    couch.save_many(s.dbs.main, [dict(d) for d in docs])
    bad_plan = new_plan_from_template("Dynamic-IRS", uid("ops", "district"), "broken", date(2026, 11, 1),
                                      date(2026, 12, 1), datetime(2026, 11, 1, tzinfo=UTC))
    bad_plan["_id"] = bad_plan["identifier"] = "broken-plan"
    bad_plan["status"] = "active"
    bad_plan["action"][0]["condition"][0]["expression"]["expression"] = "$this.type = 'x' AND foo = 'y'"
    couch.put(s.dbs.main, bad_plan)
    couch.put(s.dbs.main, {"_id": "bad-event", "type": "Event", "eventType": "Register_Structure",
                           "obs": "not a list", "baseEntityId": docs[2]["_id"]})
    good_plan = new_plan_from_template("Dynamic-FI", uid("ops", "district"), "good", date(2026, 11, 1),
                                       date(2026, 12, 1), datetime(2026, 11, 1, tzinfo=UTC))
    good_plan["status"] = "active"
    couch.put(s.dbs.main, good_plan)

    built = build(["plans"], couch, s)
    runner = Runner(couch, s, built.handlers, chores=built.chores, discover_every=0)
    runner.run(until_idle=True)

    parked = {str(p["docId"]): str(p["error"]) for p in _parked(couch, s)}
    assert set(parked) == {"broken-plan", "bad-event"}
    assert "AND" in parked["broken-plan"] and "action" in parked["broken-plan"]
    assert "obs" in parked["bad-event"]
    # the good plan, after the bad documents in the feed, was activated all the same
    rows = couch.view(s.dbs.main, "fieldsync", "tasks_by_plan_status", reduce=False,
                      startkey=[good_plan["identifier"]], endkey=[good_plan["identifier"], {}])
    assert rows

    status = subprocess.run([sys.executable, "-m", "workers.cli", "status", "--json"], capture_output=True,
                            text=True, timeout=120,
                            env={**__import__("os").environ, "FIELDSYNC_COUCH_URL": s.admin_url(),
                                 "FIELDSYNC_DB_PREFIX": s.db_prefix, "FIELDSYNC_DATA_DIR": str(s.data_dir)})
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    [plans_feed] = [f for f in data["feeds"] if f["worker"] == "plans"]
    assert plans_feed["pending"] == 0 and plans_feed["parked"] == 2 and "bad-event" in plans_feed["last_error"]
    assert data["audit"]["parked"] == 2
    [act] = [a for a in data["activations"] if a["plan"] == good_plan["identifier"]]
    assert act["state"] == "done" and act["done"] == act["total"] == 2
    # the plan worker's read model: caught up, holding the plans, locations and tasks
    model = data["readModel"]
    assert model["pending"] == 0 and model["docs"] >= len(docs) + len(rows) and model["bytes"] > 0


def test_metrics_endpoint_serves_the_runner_figures(couch: Couch, initialised: Settings) -> None:
    s = initialised
    couch.save_many(s.dbs.main, [dict(d) for d in operational_areas("met", AreaSize(areas=1, structures_per_area=3))])
    built = build(["plans", "conflicts"], couch, s)
    runner = Runner(couch, s, built.handlers, chores=built.chores, discover_every=0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = serve(runner, port)
    try:
        stop = threading.Event()
        runner.run(stop, until_idle=True)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        server.shutdown()
    assert f"fieldsync_changes_total {runner.stats.changes}" in text and runner.stats.changes > 0
    assert f'fieldsync_feed_changes_total{{worker="plans",db="{s.dbs.main}"}}' in text
