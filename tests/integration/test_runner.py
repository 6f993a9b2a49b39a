"""The runner awake (as ``fieldsync work`` runs it): workers woken by their feeds, each follower in a thread, and
databases created while it runs followed too (``_db_updates`` on CouchDB, ``_all_dbs`` polling elsewhere)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from areaworld import DISTRICT, Doc, assign, jurisdiction, register_structure, structure, user_url, world

from demo.devices import Device
from workers.couch import Couch
from workers.registry import build
from workers.runner import Runner
from workers.settings import Settings

__all__ = ["world"]  # the fixture

EAST = "oa-east"


def test_awake_workers_follow_a_new_area_and_bring_a_devices_task_back(
    couch: Couch, world: tuple[Settings, Doc], tmp_path: Path
) -> None:
    s, plan = world
    built = build(["sync", "plans", "conflicts"], couch, s)
    runner = Runner(couch, s, built.handlers, chores=built.chores, discover_every=0.5)
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            runner.run(stop)
        except BaseException as exc:  # the test's thread reports it
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        # an area that appears while the workers run: its database is made by the sync worker, then followed
        couch.save_many(s.dbs.main, [jurisdiction(EAST, DISTRICT, 3), structure("s-e1", EAST)])
        area_db = s.dbs.area(EAST)
        assert _until(lambda: ("sync", area_db) in runner.followers), "the new area's database is not followed"
        assign(couch, s, "ana", EAST)
        url = user_url(s, "ana", area_db)
        with Device(tmp_path / "ana", "ana") as ana:
            ana.put("area", structure("s-e2", EAST))
            ana.put("area", register_structure("ev-e2", "s-e2", EAST, str(plan["_id"])))
            assert ana.push("area", url)["docs_written"] == 2

            def task_back() -> bool:
                ana.pull("area", url)
                return any(d.get("type") == "Task" and d.get("for") == "s-e2" and d.get("code") == "IRS"
                           for d in ana.docs("area"))

            # nothing but the workers' own threads moves the change: no round is run by the test
            assert _until(task_back), "the follow-on task never reached the device"
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive() and not failure
    assert runner.stats.changes > 0 and couch.get(s.dbs.main, "ev-e2") is not None


def _until(check: object, seconds: float = 120.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(check) and check():
            return True
        time.sleep(0.2)
    return False
