"""Benchmark: the sync worker between the main database and the operational-area databases
(``fieldsync-area-<area>``), against a real (embedded) server. Figures only: never a pass/fail on time; every
figure comes with a reference measured on the same server in the same run (the machine is shared and noisy).

1. **Fan-out** (``--part fanout``): generated operational areas (``demo.synthetic``, ``--per-area`` structures
   each, ``--structures`` in all) are loaded into the main database with a draft ``--template`` plan (Dynamic-FI
   by default) over their district; the plan worker digests them and activates the plan
   (``Runner.run(until_idle=True)``), which writes its tasks (~20,000 at the default 20,000 structures). Then the
   sync worker alone runs until idle, starting from nothing: it creates the area databases and copies every
   structure, family, member and task into its area (and each area's chain of jurisdictions, the plan and
   ``settings``). Prints documents/s = documents in all area databases (design documents left out) / seconds.
   The reference: the server's raw replication rate for the same documents. ``POST /_replicate`` is tried
   first; the embedded server (PouchDB Server) does not route it (``server/server.js`` excludes
   ``routes/replicate``), so the reference is then a hand loop with no routing from the main database into one
   fresh database: ``_changes`` (batches of ``FIELDSYNC_BATCH_SIZE``, no documents), ``_revs_diff`` +
   ``_bulk_get?revs=true`` + ``_bulk_docs new_edits:false`` (``workers.areas.replicate.copy_revisions``, the
   worker's own copy), i.e. the floor of what the worker does. Prints both rates and the ratio.

2. **Round trip** (``--part roundtrip``): ``--areas`` areas of ``--rt-per-area`` structures, an active
   Dynamic-IRS plan over their district, ``--devices`` users (one per device, role ``spray_operator``) assigned
   round-robin to the areas (``workers.areas.assignments.update`` + ``apply_security``, as the integration
   tests do), the workers run until idle (activation and fan-out), every device (``demo.devices.Device``,
   one Node PouchDB process each, replicating as its user) pulls its area database. Then the workers
   ``sync``, ``plans`` and ``conflicts`` run continuously in a background thread (``Runner.run(stop_event)``:
   each follower woken by a longpoll of its feed, the workers side by side, as ``fieldsync work`` runs them)
   while every device at once (one thread each, a barrier) puts a new residential structure and its
   ``Register_Structure`` event into its local area database and pushes; the follow-on IRS task comes back
   through the live pull every device keeps open after its first pull (PouchDB ``live: true``: a longpoll
   ``_changes``, as an app holds while open), or, with ``--poll S``, through a pull every S seconds. The
   first pulls are each given 120 s, then cancelled and tried again (up to 3 times), as an app would; then each
   device pushes once (nothing new: it sets the push's checkpoint, as an app's first sync does).
   Per-device round trip = from the put to the task being local.
   Prints p50/p95/max, and as the reference the server's raw round trip in the same run, with the workers
   stopped: one device's put of a single structure + push + pull, p50 over ``--ref-tries``. Also printed: the
   same round trip of one device alone first (workers running, the other devices idle, ``--solo-tries``), and
   the part of each round trip after the push (push done -> task local). With ``--with-activation N``, another
   district of N structures (500 per area, families without members) is loaded with a draft Dynamic-IRS plan,
   made and synced at set-up, and that plan is activated 3 s before the devices write: the round trips are made
   while the plan worker activates it and the sync worker fans its tasks out (printed: its tasks when the
   devices started and when the last one was done).

Run one benchmark at a time (2 shared cores):

    .venv/bin/python bench/areas_sync.py                        # both parts, default sizes
    .venv/bin/python bench/areas_sync.py --part fanout [--structures 20000] [--per-area 500] [--template Dynamic-IRS]
    .venv/bin/python bench/areas_sync.py --part roundtrip [--devices 50] [--areas 10] [--rt-per-area 100] [--poll 0]
                                         [--with-activation 20000]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    ServerCpu,
    activate,
    add_server_args,
    area_size,
    audit_count,
    bench_server,
    cpu_of_trees,
    fresh_db,
    load,
    maxrss_mib,
    percentile,
    quiet_logs,
    rate,
    run_workers,
    scratch,
    spread,
    use_server_args,
)
from demo.devices import Device, DeviceError
from demo.synthetic import AreaSize, area_ids, operational_areas, structure, uid
from workers import provision
from workers.areas import assignments
from workers.areas.index import MainIndex
from workers.areas.replicate import copy_revisions
from workers.audit import receipts
from workers.couch import Couch, Doc
from workers.errors import FieldsyncError
from workers.evaluator.tasks import task_id
from workers.evaluator.templates import new_plan_from_template
from workers.logs import JsonFormatter
from workers.plans import activation
from workers.registry import build
from workers.runner import Runner, RunStats
from workers.settings import Settings

SEED = "bench-areas"
ROLE = "spray_operator"
FIRST_PULL_TIMEOUT = 120.0  # seconds: a first pull that has not settled by then is cancelled and tried again
FIRST_PULL_ATTEMPTS = 3
BUSY_SEED = "bench-areas-busy"
BUSY_PER_AREA = 500
BUSY_HEAD_START = 3.0  # seconds between the activation and the devices' writes


# --------------------------------------------------------------------------------------------- helpers


def count_docs(couch: Couch, db: str) -> int:
    """Documents of ``db`` that are not design documents (``doc_count`` minus ``_design/`` rows)."""
    info = couch.db_info(db) or {}
    designs = couch.all_docs(db, include_docs=False, startkey="_design/", endkey="_design0")
    return int(info.get("doc_count", 0)) - len(designs)


def area_dbs(couch: Couch, settings: Settings) -> list[str]:
    return [db for db in couch.all_dbs() if settings.dbs.area_of(db) is not None]


def plan_for(template: str, district: str, title: str) -> Doc:
    return new_plan_from_template(template, district, title, date(2026, 11, 1), date(2026, 12, 31),
                                  datetime(2026, 11, 1, tzinfo=UTC))


def try_replicate(couch: Couch, settings: Settings, source: str, target: str) -> tuple[float | None, str]:
    """``POST /_replicate`` source -> target (admin credentials in both URLs): (seconds, "") when the server
    replicated, (None, why) when it cannot."""
    url = settings.admin_url()
    body = {"source": f"{url}/{source}", "target": f"{url}/{target}", "create_target": True}
    started = time.perf_counter()
    try:
        result = couch.request("POST", "_replicate", body=body, retries=0)
    except FieldsyncError as exc:
        return None, str(exc)
    if not (result or {}).get("ok"):
        return None, f"answered {str(result)[:200]}"
    return time.perf_counter() - started, ""


def area_like_design_docs() -> list[Doc]:
    """An area database's design documents under ids of their own (``_design/bench-area-...``): a replication
    of the main database would otherwise bring main's ``_design/fieldsync`` over the area's one."""
    return [{**d, "_id": f"_design/bench-area-{str(d['_id']).removeprefix('_design/')}"}
            for d in provision.area_design_docs("bench-area")]


def hand_replicate(couch: Couch, source: str, target: str, batch: int) -> tuple[float, int]:
    """The floor of the sync worker's copy: ``_changes`` of ``source`` in batches (no documents, every leaf),
    then ``_revs_diff`` + ``_bulk_get?revs=true`` + ``_bulk_docs new_edits:false`` into ``target``, no routing,
    design documents left out. (seconds, revisions written)."""
    started = time.perf_counter()
    since: Any = 0
    written = 0
    while True:
        page = couch.changes(source, since, limit=batch, include_docs=False, style="all_docs")
        leaves = {str(c["id"]): [str(r["rev"]) for r in c.get("changes", []) if r.get("rev")]
                  for c in page.results if not str(c.get("id", "")).startswith("_design/")}
        written += copy_revisions(couch, source, target, leaves).count
        since = page.last_seq
        if len(page.results) < batch:
            break
    return time.perf_counter() - started, written


# --------------------------------------------------------------------------------------------- 1. fan-out


def measure_fanout(structures: int, per_area: int, template: str) -> dict[str, Any]:
    size = area_size(structures, per_area)
    out: dict[str, Any] = {"structures": size.areas * size.structures_per_area, "areas": size.areas,
                           "template": template}
    with bench_server() as server:
        couch, settings = server.couch, server.settings
        main = settings.dbs.main
        started = time.perf_counter()
        out["loaded"] = load(couch, main, operational_areas(SEED, size))
        plan = plan_for(template, uid(SEED, "district"), "bench areas")
        couch.put(main, plan)
        out["load_s"] = time.perf_counter() - started
        out["digest_s"], _ = run_workers(couch, settings, ["plans"])
        activate(couch, settings, str(plan["_id"]))
        out["activation_s"], _ = run_workers(couch, settings, ["plans"])
        progress = couch.get_local(main, activation.progress_name(str(plan["_id"]))) or {}
        out["activation_state"] = progress.get("state")
        out["tasks"] = int(progress.get("tasksWritten") or 0)
        out["main_docs"] = count_docs(couch, main)

        out["sync_s"], stats = run_workers(couch, settings, ["sync"])
        out["sync_stats"] = stats
        dbs = area_dbs(couch, settings)
        out["area_dbs"] = len(dbs)
        per_db = {db: count_docs(couch, db) for db in dbs}
        out["area_docs"] = sum(per_db.values())
        generated = {settings.dbs.area(a) for a in area_ids(SEED, size)}
        out["per_area_docs"] = sorted(n for db, n in per_db.items() if db in generated)
        out["other_area_dbs"] = {db: n for db, n in per_db.items() if db not in generated}
        out["parked"] = audit_count(couch, settings, "parked")
        out["refused"] = audit_count(couch, settings, "refused")

        # the reference, same server, same documents
        target = scratch("benchraw-replicate")
        couch.delete_db(target)
        seconds, why = try_replicate(couch, settings, main, target)
        out["replicate_why"] = why
        if seconds is not None:
            out["replicate_s"] = seconds
            out["replicate_docs"] = count_docs(couch, target)
        target = fresh_db(couch, "benchraw-handloop")
        out["batch"] = settings.batch_size
        out["hand_s"], out["hand_revs"] = hand_replicate(couch, main, target, settings.batch_size)
        out["hand_docs"] = count_docs(couch, target)
        # the same copies into a database like an area's: its design documents (the validation function the
        # server runs for every revision written to it, the replicator's and the workers' included)
        if seconds is not None:
            target = fresh_db(couch, "benchraw-replicate-area")
            couch.bulk_docs(target, area_like_design_docs())
            out["replicate_area_s"], _ = try_replicate(couch, settings, main, target)
            out["replicate_area_docs"] = count_docs(couch, target)
        target = fresh_db(couch, "benchraw-handloop-area")
        couch.bulk_docs(target, area_like_design_docs())
        out["hand_area_s"], _ = hand_replicate(couch, main, target, settings.batch_size)
        out["hand_area_docs"] = count_docs(couch, target)
        out["rss_mib"] = maxrss_mib()
    return out


def report_fanout(m: dict[str, Any]) -> None:
    stats: RunStats = m["sync_stats"]
    print(f"1. Fan-out main -> area databases by the sync worker: {m['structures']:,} structures in {m['areas']} "
          f"areas, {m['template']} activated")
    print(f"  load             {m['load_s']:8.1f} s  {m['loaded']:,} documents")
    print(f"  plan worker      digest {m['digest_s']:.1f} s, activation {m['activation_s']:.1f} s: "
          f"{m['tasks']:,} tasks (state {m['activation_state']}); main holds {m['main_docs']:,} documents")
    worker = rate(m["area_docs"], m["sync_s"])
    print(f"  sync worker      {m['sync_s']:8.1f} s  {m['area_docs']:,} documents in {m['area_dbs']} area databases "
          f"({stats.changes:,} changes read on main and areas, {stats.writes:,} revisions written, "
          f"{m['parked']} parked, {m['refused']} refused)  {worker:8,.0f} docs/s")
    if m["per_area_docs"]:
        print(f"  per area         {min(m['per_area_docs']):,} to {max(m['per_area_docs']):,} documents in the "
              f"{len(m['per_area_docs'])} generated areas' databases")
    for db, n in m["other_area_dbs"].items():
        print(f"  other area db    {db}: {n:,} documents (not one of the generated operational areas)")
    if "replicate_s" in m:
        raw = rate(m["replicate_docs"], m["replicate_s"])
        print(f"  POST /_replicate {m['replicate_s']:8.1f} s  {m['replicate_docs']:,} documents  {raw:8,.0f} docs/s")
        print(f"  ratio            {worker / raw:8.2f}  (sync worker docs/s / _replicate docs/s)")
    else:
        print(f"  POST /_replicate unavailable on this server: {m['replicate_why']}")
    hand = rate(m["hand_docs"], m["hand_s"])
    print(f"  raw hand loop    {m['hand_s']:8.1f} s  {m['hand_docs']:,} documents main -> one fresh database "
          f"(_changes of {m['batch']} + _revs_diff + _bulk_get?revs + _bulk_docs new_edits:false, no routing)  "
          f"{hand:8,.0f} docs/s")
    print(f"  ratio            {worker / hand:8.2f}  (sync worker docs/s / raw hand-loop docs/s)")
    print("  into a database like an area's (its design documents: the server runs its validate_doc_update for "
          "every revision written)")
    if m.get("replicate_area_s"):
        raw = rate(m["replicate_area_docs"], m["replicate_area_s"])
        print(f"  POST /_replicate {m['replicate_area_s']:8.1f} s  {m['replicate_area_docs']:,} documents  "
              f"{raw:8,.0f} docs/s  ratio {worker / raw:.2f}")
    hand = rate(m["hand_area_docs"], m["hand_area_s"])
    print(f"  raw hand loop    {m['hand_area_s']:8.1f} s  {m['hand_area_docs']:,} documents  {hand:8,.0f} docs/s  "
          f"ratio {worker / hand:.2f}")
    print(f"  peak RSS         {m['rss_mib']:8.1f} MiB (this process, worker in-process)")


# --------------------------------------------------------------------------------------------- 2. round trip


def register_structure(event_id: str, structure_id: str, area: str, plan_id: str, provider: str) -> Doc:
    """A Register_Structure form as the Reveal app saves it (tests/integration/test_areas.py's shape)."""
    now = datetime.now(UTC)
    obs = {"fieldType": "formsubmissionField", "fieldDataType": "text", "fieldCode": "structureType",
           "parentCode": "", "values": ["Residential Structure"], "set": [],
           "formSubmissionField": "structureType", "humanReadableValues": [], "saveObsAsArray": False}
    return {"_id": event_id, "type": "Event", "eventType": "Register_Structure", "baseEntityId": structure_id,
            "locationId": area, "formSubmissionId": event_id, "providerId": provider, "entityType": "Structure",
            "duration": 0, "eventDate": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "obs": [obs], "details": {"planIdentifier": plan_id}, "identifiers": {},
            "version": int(now.timestamp() * 1000)}


def irs_task_id(plan: Doc, entity: str, area: str) -> str:
    action = next(a for a in plan["action"] if a.get("code") == "IRS")
    return task_id(str(plan["identifier"]), f"{action['identifier']}\x1e{action['code']}", entity, area)


def user_name(i: int) -> str:
    return scratch(f"op{i:03d}")


def password(i: int) -> str:
    return f"bench-{i:03d}-pw"


class Background(threading.Thread):
    """The workers, running continuously with their own client, until ``stop`` is set."""

    def __init__(self, settings: Settings, names: list[str]) -> None:
        super().__init__(name="workers", daemon=True)
        couch = Couch.from_settings(settings)
        built = build(names, couch, settings)
        self.runner = Runner(couch, settings, built.handlers, chores=built.chores)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.stats: RunStats | None = None

    def run(self) -> None:
        try:
            self.stats = self.runner.run(self.stop)
        except BaseException as exc:  # reported by the main thread
            self.error = exc


def measure_round_trip(devices: int, areas: int, per_area: int, poll: float, timeout: float,
                       ref_tries: int, solo_tries: int, busy: int = 0) -> dict[str, Any]:
    size = AreaSize(areas=areas, structures_per_area=per_area, members_per_family=4)
    out: dict[str, Any] = {"devices": devices, "areas": areas, "per_area": per_area, "poll": poll}
    dev_root = Path(tempfile.mkdtemp(prefix="fieldsync-bench-areas-"))
    fleet: list[Device] = []
    try:
        with bench_server() as server:
            couch, settings = server.couch, server.settings
            main = settings.dbs.main
            started = time.perf_counter()
            out["loaded"] = load(couch, main, operational_areas(SEED, size))
            plan = plan_for("Dynamic-IRS", uid(SEED, "district"), "bench areas round trip")
            plan["status"] = "active"
            couch.put(main, plan)
            busy_plan: Doc | None = None
            busy_structures: list[tuple[str, str]] = []  # (structure, its area)
            if busy:  # another district, whose plan is activated while the devices make their round trips
                busy_size = AreaSize(areas=max(1, -(-busy // BUSY_PER_AREA)),
                                     structures_per_area=min(busy, BUSY_PER_AREA), members_per_family=0)
                out["busy_loaded"] = load(couch, main, operational_areas(BUSY_SEED, busy_size))
                out["busy_structures"] = busy_size.areas * busy_size.structures_per_area
                busy_plan = plan_for("Dynamic-IRS", uid(BUSY_SEED, "district"), "bench activation under way")
                couch.put(main, busy_plan)
                busy_structures = [(uid(BUSY_SEED, "structure", a, i), uid(BUSY_SEED, "area", a))
                                   for a in range(busy_size.areas) for i in range(busy_size.structures_per_area)]
            for i in range(devices):
                provision.add_user(couch, settings, user_name(i), password(i), [ROLE])
            out["setup_workers_s"], _ = run_workers(couch, settings, ["sync", "plans", "conflicts"])
            ids = area_ids(SEED, size)
            home = {user_name(i): ids[i % len(ids)] for i in range(devices)}

            def assign(current: assignments.Assignments) -> None:
                for user, area in home.items():
                    current.users.setdefault(user, []).append(area)

            assignments.update(couch, settings, assign)
            assignments.apply_security(couch, settings, MainIndex(couch, main), sorted(set(home.values())))
            known = uid(SEED, "structure", 0, 0)
            if couch.get(main, irs_task_id(plan, known, uid(SEED, "area", 0))) is None:
                raise RuntimeError("the IRS task id formula does not match the plan worker's (no task for "
                                   f"structure {known}); fix irs_task_id")
            out["tasks_before"] = sum(1 for _ in couch.iter_view(main, "fieldsync", "tasks_by_plan_status",
                                                                 reduce=False))
            out["setup_s"] = time.perf_counter() - started

            def url(i: int) -> str:
                return f"{settings.url_for(user_name(i), password(i))}/{settings.dbs.area(home[user_name(i)])}"

            started = time.perf_counter()
            for i in range(devices):
                fleet.append(Device(dev_root / f"d{i:03d}", user_name(i)))
            retried: list[str] = []

            def first_pull(i: int) -> dict[str, Any]:
                # a replication that does not settle is cancelled and tried again, as an app would
                for attempt in range(1, FIRST_PULL_ATTEMPTS + 1):
                    try:
                        return fleet[i].pull("area", url(i), timeout=FIRST_PULL_TIMEOUT)
                    except DeviceError as exc:
                        if exc.name != "timeout" or attempt == FIRST_PULL_ATTEMPTS:
                            raise
                        retried.append(user_name(i))
                raise AssertionError("unreachable")

            with ThreadPoolExecutor(max_workers=devices) as pool:
                first = list(pool.map(first_pull, range(devices)))
            out["first_pull_s"] = time.perf_counter() - started
            out["first_pull_retried"] = retried
            # each device's first push: nothing new to send, but PouchDB's push starts from the beginning of the
            # local database, whose documents (all pulled) it checks against the server in batches of 100, each
            # with a checkpoint. An app's sync does this once, right after its first pull; left to the measured
            # push, it made that push 7 batches of _revs_diff + checkpoint instead of one (50 devices on CouchDB)
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=devices) as pool:
                list(pool.map(lambda i: fleet[i].push("area", url(i), timeout=FIRST_PULL_TIMEOUT), range(devices)))
            out["first_push_s"] = time.perf_counter() - started
            out["first_pull_docs"] = sum(int(r.get("docs_written") or 0) for r in first)

            live = poll <= 0
            if live:  # every device keeps a live pull open, as an app does while open
                with ThreadPoolExecutor(max_workers=devices) as pool:
                    list(pool.map(lambda i: fleet[i].live_pull("area", url(i)), range(devices)))
            background = Background(settings, ["sync", "plans", "conflicts"])
            background.start()
            time.sleep(2.0)  # the runner's first discovery and a pass over the (caught-up) feeds

            def trip(i: int, tag: str, barrier: threading.Barrier | None) -> dict[str, Any]:
                device, area = fleet[i], home[user_name(i)]
                sid, eid = uid(SEED, f"{tag}-structure", i), uid(SEED, f"{tag}-event", i)
                wanted = irs_task_id(plan, sid, area)
                if barrier is not None:
                    barrier.wait()
                began, put_at = time.perf_counter(), time.time()
                device.put("area", structure(sid, area, "Residential Structure", 100.0 + i * 0.001, 14.0))
                device.put("area", register_structure(eid, sid, area, str(plan["_id"]), user_name(i)))
                pushed = device.push("area", url(i))
                push_s = time.perf_counter() - began
                if live:
                    got = device.wait_for("area", wanted, max(0.0, timeout - (time.perf_counter() - began)))
                    return {"s": time.perf_counter() - began, "push_s": push_s, "pulls": 0,
                            "pushed": pushed.get("docs_written"), "ok": got is not None,
                            "event": eid, "area": area, "put_at": put_at}
                pulls = 0
                while True:
                    device.pull("area", url(i))
                    pulls += 1
                    try:
                        device.get("area", wanted)
                        ok = True
                    except DeviceError:
                        ok = False
                    if ok or time.perf_counter() - began > timeout or background.error is not None:
                        return {"s": time.perf_counter() - began, "push_s": push_s, "pulls": pulls,
                                "pushed": pushed.get("docs_written"), "ok": ok}
                    time.sleep(poll)

            # one device alone first (workers running, the other devices idle): the pipeline without contention
            out["solo"] = [trip(0, f"solo{k}", None) for k in range(solo_tries)]
            if busy_plan is not None:
                activate(couch, settings, str(busy_plan["_id"]))
                time.sleep(BUSY_HEAD_START)  # the activation under way before the devices write
                out["busy_tasks_before"] = _plan_tasks(couch, main, busy_plan, busy_structures)
            barrier = threading.Barrier(devices)
            # where the machine's CPU goes during the trips: the server, the devices, this process (the workers)
            server_cpu, device_pids = ServerCpu(settings.couch_url), [d.pid for d in fleet]
            devices_before, own_before = cpu_of_trees(device_pids), time.process_time()
            requests_before = server_requests(couch)
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=devices) as pool:
                trips = list(pool.map(lambda i: trip(i, "rt", barrier), range(devices)))
            out["wall_s"] = time.perf_counter() - started
            out["cpu"] = {"server": server_cpu.take(), "devices": cpu_of_trees(device_pids) - devices_before,
                          "workers": time.process_time() - own_before}
            requests_after = server_requests(couch)
            if requests_before is not None and requests_after is not None:
                out["requests"] = {method: requests_after[method] - requests_before.get(method, 0)
                                   for method in requests_after
                                   if requests_after[method] - requests_before.get(method, 0) > 0}
            if busy_plan is not None:
                out["busy_tasks_after"] = _plan_tasks(couch, main, busy_plan, busy_structures)
            background.stop.set()
            background.join(timeout=120)
            if live:
                for device in fleet:
                    device.stop_live("area")
            if background.error is not None:
                raise RuntimeError(f"the workers failed: {background.error!r}")
            out["trips"] = trips
            for t in trips:  # when the server first saw each event: its receipt (the sync worker's, area -> main)
                t["seen_at"] = _receipt_time(couch, settings, t.get("event"))
            out["worker_stats"] = background.stats
            out["parked"] = audit_count(couch, settings, "parked")
            out["refused"] = audit_count(couch, settings, "refused")

            # the reference, workers stopped: one device, a single structure, push + pull
            refs: list[float] = []
            for k in range(ref_tries):
                sid = uid(SEED, "ref-structure", k)
                began = time.perf_counter()
                fleet[0].put("area", structure(sid, home[user_name(0)], "Residential Structure", 101.0, 14.0))
                fleet[0].push("area", url(0))
                fleet[0].pull("area", url(0))
                refs.append(time.perf_counter() - began)
            out["ref"] = refs
            out["rss_mib"] = maxrss_mib()
    finally:
        with ThreadPoolExecutor(max_workers=max(1, len(fleet))) as closer:
            list(closer.map(lambda d: d.close(), fleet))
        shutil.rmtree(dev_root, ignore_errors=True)
    return out


def server_requests(couch: Couch) -> dict[str, int] | None:
    """The HTTP requests an Apache CouchDB node has answered so far, by method (its own counters,
    ``/_node/_local/_stats``); None for a server without them (the embedded one)."""
    if couch.server_kind() != "couchdb":
        return None
    try:
        stats = couch.request("GET", "_node", "_local", "_stats", "couchdb", "httpd_request_methods", retries=0)
    except FieldsyncError:
        return None
    return {method: int(entry.get("value") or 0) for method, entry in stats.items() if isinstance(entry, dict)}


def _receipt_time(couch: Couch, settings: Settings, event_id: str | None) -> float | None:
    doc = couch.get(settings.dbs.main, event_id) if event_id else None
    if doc is None:
        return None
    found = receipts(couch, settings.dbs.audit, [(str(event_id), str(doc["_rev"]))])
    return next(iter(found.values()), None)


def split_round_trips(trips: list[dict[str, Any]], worker_log: Path) -> dict[str, list[float]]:
    """Each live round trip cut into its stages (seconds), from the trip's own times, the event's receipt and
    the workers' log: push (device), to the sync worker (push done -> the worker reads the event in the area),
    to main and evaluated (-> the plan worker's ``evaluated`` line for the event, its tasks written), to the
    area (-> the first copy of tasks into the event's area after that, fast lane or ordered fan-out), to the
    device (-> the task local)."""
    evaluated: dict[str, float] = {}
    copies: dict[str, list[float]] = {}
    began = min((t["put_at"] for t in trips if "put_at" in t), default=0.0)
    for line in worker_log.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        at = datetime.fromisoformat(str(rec.get("ts", "")).replace("Z", "+00:00")).timestamp()
        if at < began:
            continue  # an earlier run's lines (the file is appended to), or this run's set-up
        if rec.get("event") == "evaluated" and rec.get("doc_id"):
            evaluated.setdefault(str(rec["doc_id"]), at)
        elif rec.get("event") == "sync batch" and str(rec.get("direction", "")).startswith("main->area") \
                and rec.get("revisions"):
            copies.setdefault(str(rec.get("area")), []).append(at)
    stages: dict[str, list[float]] = {k: [] for k in ("push", "to sync", "to main + evaluated", "to area",
                                                      "to device")}
    for t in trips:
        ev, seen = evaluated.get(str(t.get("event"))), t.get("seen_at")
        if not t.get("ok") or "put_at" not in t or ev is None or seen is None:
            continue
        pushed, local = t["put_at"] + t["push_s"], t["put_at"] + t["s"]
        copied = min((c for c in copies.get(str(t["area"]), []) if c >= ev), default=None)
        if copied is None:
            continue
        stages["push"].append(t["push_s"])
        stages["to sync"].append(seen - pushed)
        stages["to main + evaluated"].append(ev - seen)
        stages["to area"].append(copied - ev)
        stages["to device"].append(local - copied)
    return stages


def _plan_tasks(couch: Couch, db: str, plan: Doc, structures: list[tuple[str, str]]) -> int:
    """How many of the plan's IRS tasks (deterministic ids) exist now: ``_all_docs`` by key, so that no view
    index is built in the middle of the measurement."""
    ids = [irs_task_id(plan, sid, area) for sid, area in structures]
    found = 0
    for start in range(0, len(ids), 2000):
        rows = couch.all_docs(db, ids[start : start + 2000], include_docs=False)
        found += sum(1 for row in rows if "error" not in row and not (row.get("value") or {}).get("deleted"))
    return found


def report_round_trip(m: dict[str, Any]) -> None:
    trips = m["trips"]
    done = [t["s"] for t in trips if t["ok"]]
    print(f"2. Round trip device -> main -> follow-on IRS task -> device: {m['devices']} devices (Node PouchDB, "
          f"one user each) at once over {m['areas']} areas of {m['per_area']} structures, Dynamic-IRS active")
    print(f"  set-up           {m['setup_s']:8.1f} s  {m['loaded']:,} documents, {m['tasks_before']:,} tasks, workers "
          f"until idle {m['setup_workers_s']:.1f} s; first pull of every device {m['first_pull_s']:.1f} s "
          f"({m['first_pull_docs']:,} documents), then its first push {m['first_push_s']:.1f} s (nothing new: it sets "
          "the push's checkpoint, as an app's first sync does)")
    if m["first_pull_retried"]:
        print(f"  first pull       {len(m['first_pull_retried'])} replications did not settle within "
              f"{FIRST_PULL_TIMEOUT:.0f} s and were tried again ({', '.join(m['first_pull_retried'][:5])})")
    stats: RunStats | None = m["worker_stats"]
    if stats is not None:
        print(f"  workers          sync, plans, conflicts in a background thread (awake: woken by their feeds): "
              f"{stats.changes:,} changes, {stats.writes:,} writes, {m['parked']} parked, {m['refused']} refused")
    how = (f"pull every {m['poll']} s" if m["poll"] > 0 else "the live pull (longpoll) brings it") + " until the IRS"
    print(f"  devices          put structure + Register_Structure, push, {how} task is local; all done in "
          f"{m['wall_s']:.1f} s; {len(done)} of {len(trips)} got their task")
    if "busy_tasks_after" in m:
        print(f"  activation       under way during the round trips: Dynamic-IRS over {m['busy_structures']:,} more "
              f"structures ({m['busy_loaded']:,} documents) activated {BUSY_HEAD_START:.0f} s before; its tasks "
              f"{m['busy_tasks_before']:,} when the devices started, {m['busy_tasks_after']:,} when the last was done "
              "(IRS tasks for residential structures only)")
    cpu = m.get("cpu") or {}
    if cpu:
        server = "not a local process" if cpu["server"] is None else f"{cpu['server']:.1f} s"
        print(f"  CPU              during those {m['wall_s']:.1f} s ({os.cpu_count()} cores: "
              f"{m['wall_s'] * (os.cpu_count() or 1):.1f} s at most): server {server}, devices {cpu['devices']:.1f} s, "
              f"this process (workers, device drivers) {cpu['workers']:.1f} s")
    if m.get("requests"):
        counts = m["requests"]
        print(f"  requests         {sum(counts.values()):,} answered by the server during those "
              f"{m['wall_s']:.1f} s ({', '.join(f'{k} {v:,}' for k, v in sorted(counts.items()))}; its own counters)")
    not_two = [t for t in trips if t["pushed"] != 2]
    if not_two:
        print(f"  push anomalies   {len(not_two)} pushes did not write 2 documents, e.g. {not_two[0]}")
    print(f"  push (ms)        {spread([t['push_s'] for t in trips])}")
    pulls = [float(t["pulls"]) for t in trips]
    if m["poll"] > 0:
        print(f"  pulls per device p50 {percentile(pulls, 0.5):.0f}  max {max(pulls):.0f}")
    print(f"  round trip (ms)  {spread(done)}")
    print(f"  after the push   {spread([t['s'] - t['push_s'] for t in trips if t['ok']])}  ms (push done -> task "
          "local)")
    solo = [t["s"] for t in m["solo"] if t["ok"]]
    print(f"  one device alone {spread(solo)}  ms ({len(solo)} of {len(m['solo'])} tries, workers running, the "
          f"other devices idle; push {spread([t['push_s'] for t in m['solo']])})")
    print(f"  raw round trip   {spread(m['ref'])}  ms (one device: put one structure, push, pull; workers stopped; "
          f"{len(m['ref'])} tries)")
    ref50 = percentile(m["ref"], 0.5)
    if solo and ref50 > 0:
        print(f"  ratio alone      p50 {percentile(solo, 0.5) / ref50:6.1f}x the raw round trip's p50")
    if done and ref50 > 0:
        print(f"  ratio            p50 {percentile(done, 0.5) / ref50:6.1f}x  "
              f"p95 {percentile(done, 0.95) / ref50:6.1f}x  max {max(done) / ref50:6.1f}x the raw round trip's p50")
    print(f"  peak RSS         {m['rss_mib']:8.1f} MiB (this process, workers in-process; devices are other "
          "processes)")
    if m.get("split"):
        counted = len(next(iter(m["split"].values())))
        print(f"  stages (ms, from the workers' log; {counted} of {len(trips)} trips placed; log times have ms "
              "precision, a stage may read slightly below 0):")
        for name, values in m["split"].items():
            print(f"    {name:22} {spread(values) if values else '-'}")


# --------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--part", choices=["fanout", "roundtrip", "all"], default="all")
    parser.add_argument("--structures", type=int, default=6_000, help="fan-out: generated structures (Dynamic-FI "
                        "makes ~3.4 tasks per structure: 6,000 -> ~20,000 tasks; Dynamic-IRS ~0.9: use 22,000)")
    parser.add_argument("--per-area", type=int, default=500, help="fan-out: structures per area")
    parser.add_argument("--template", default="Dynamic-FI", choices=["Dynamic-FI", "Dynamic-IRS"],
                        help="fan-out: the plan activated before the sync")
    parser.add_argument("--devices", type=int, default=50, help="round trip: devices (Node processes)")
    parser.add_argument("--areas", type=int, default=10, help="round trip: operational areas")
    parser.add_argument("--rt-per-area", type=int, default=100, help="round trip: structures per area")
    parser.add_argument("--poll", type=float, default=0.0, help="round trip: seconds between a device's pulls; "
                        "0 (default): every device keeps a live pull open (longpoll _changes), as an app does")
    parser.add_argument("--timeout", type=float, default=300.0, help="round trip: seconds a device waits")
    parser.add_argument("--with-activation", type=int, default=0, metavar="STRUCTURES",
                        help="round trip: an activation of Dynamic-IRS over this many more structures (another "
                        "district) runs while the devices make their round trips (e.g. 20000)")
    parser.add_argument("--ref-tries", type=int, default=7, help="round trip: tries of the raw reference")
    parser.add_argument("--solo-tries", type=int, default=3, help="round trip: one device alone first, tries")
    parser.add_argument("--worker-log", type=Path, default=None, metavar="FILE",
                        help="the workers' JSON log lines (one per batch, with its milliseconds) into FILE: where a "
                        "round trip's time goes, worker by worker")
    add_server_args(parser)
    args = parser.parse_args(argv)
    use_server_args(args)
    quiet_logs()
    if args.worker_log is not None:
        handler = logging.FileHandler(args.worker_log)
        handler.setFormatter(JsonFormatter())
        handler.setLevel(logging.INFO)
        logging.getLogger("fieldsync").addHandler(handler)
        logging.getLogger("fieldsync").setLevel(logging.INFO)
        logging.getLogger("fieldsync").propagate = False  # the figures stay alone on the output
    if args.part in ("fanout", "all"):
        report_fanout(measure_fanout(args.structures, args.per_area, args.template))
    if args.part in ("roundtrip", "all"):
        if shutil.which("node") is None:
            print("node is needed for the simulated devices", file=sys.stderr)
            return 2
        m = measure_round_trip(args.devices, args.areas, args.rt_per_area, args.poll, args.timeout,
                               args.ref_tries, args.solo_tries, args.with_activation)
        if args.worker_log is not None and args.poll <= 0:
            m["split"] = split_round_trips(m["trips"], args.worker_log)
        report_round_trip(m)
    return 0


if __name__ == "__main__":
    sys.exit(main())
