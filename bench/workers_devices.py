"""Benchmark: simulated devices replicating events at once; latency from an event reaching the server to its
follow-on tasks, against a real (embedded) server.

Set-up: generated operational areas (``demo.synthetic``) and an active Dynamic-IRS plan over their district,
activated beforehand (``Runner.run(until_idle=True)``). Then the plan worker runs continuously, as operators run
it: a ``fieldsync work plans`` subprocess (default runner settings: woken by a longpoll of the main feed).

``--devices`` simulated devices (``demo.devices.Device``: one Node PouchDB process each, LevelDB on disk,
replicating through the CouchDB protocol) each record, offline, ``--events`` new residential structures with
their ``Register_Structure`` event (the IRS "drop a point" walk-through); then all of them push at once (a
barrier, one thread per device), ``--rounds`` times. At this stage devices replicate straight into the main
database as the admin (no per-user database or filtered replication in between).

The follow-on tasks of each event: the Completed "Register Structure" task (post-save of the event) and the
Ready "IRS" spray task of its structure (which the structure's own arrival may create first: both come in the
same replication). A watcher follows the main database's ``_changes`` (longpoll, with documents) and stamps
the first time it sees each event and each task; latency = task seen - event seen (both through the same feed,
so the feed's own delay cancels out). Prints p50/p95/max of the latency to the last of the two tasks and per
task, the devices' push durations, and, as the reference of the same run, the server's raw write round trip
(one small ``PUT`` then ``GET``, sequential, idle server) and the latency as a multiple of it.
Figures only: never a pass/fail on time.

50 Node processes on a 2-core machine are heavy (starting them took ~40 s on the 2-core bench machine, and
they all push at once): the figures then include the devices' own CPU contention with the server and the
worker; ``--devices 20`` is the lighter variant.

    .venv/bin/python bench/workers_devices.py [--devices 50] [--events 2] [--rounds 3] [--structures 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
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
    Server,
    add_server_args,
    area_size,
    audit_count,
    bench_server,
    fresh_db,
    load,
    maxrss_mib,
    percentile,
    quiet_logs,
    raw_round_trips,
    run_workers,
    spread,
    use_server_args,
)
from demo.devices import Device
from demo.synthetic import area_ids, operational_areas, structure, uid
from workers.couch import Couch, Doc
from workers.evaluator.templates import new_plan_from_template

SEED = "bench-devices"
CODES = ("Register Structure", "IRS")


# --------------------------------------------------------------------------------------------- documents


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def register_structure_event(event_id: str, structure_id: str, area: str, plan_id: str, device: str) -> Doc:
    """A Register_Structure form as the Reveal app saves it (the IRS walk-through's shape)."""
    now = datetime.now(UTC)
    obs = {"fieldType": "formsubmissionField", "fieldDataType": "text", "fieldCode": "structureType",
           "parentCode": "", "values": ["Residential Structure"], "set": [],
           "formSubmissionField": "structureType", "humanReadableValues": [], "saveObsAsArray": False}
    return {"_id": event_id, "type": "Event", "eventType": "Register_Structure", "baseEntityId": structure_id,
            "locationId": area, "formSubmissionId": event_id, "providerId": device,
            "entityType": "Structure", "duration": 0, "eventDate": _iso(now), "obs": [obs],
            "details": {"planIdentifier": plan_id}, "identifiers": {}, "version": int(now.timestamp() * 1000),
            "dateCreated": _iso(now)}


def irs_plan(district: str) -> Doc:
    plan = new_plan_from_template("Dynamic-IRS", district, "bench devices", date(2026, 11, 1), date(2026, 12, 31),
                                  datetime(2026, 11, 1, tzinfo=UTC))
    plan["status"] = "active"
    return plan


# --------------------------------------------------------------------------------------------- the watcher


class Watcher(threading.Thread):
    """Follows ``_changes`` of one database (longpoll, documents) and stamps the first sight of every event
    (by id) and every task (by entity and code), with ``time.perf_counter()``."""

    def __init__(self, couch: Couch, db: str, since: Any) -> None:
        super().__init__(name="watcher", daemon=True)
        self.couch = couch
        self.db = db
        self.since = since
        self.events: dict[str, float] = {}
        self.tasks: dict[tuple[str, str], float] = {}
        self.halt = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                page = self.couch.changes(self.db, self.since, limit=1000, include_docs=True, longpoll=1.0)
                seen = time.perf_counter()
                with self._lock:
                    for change in page.results:
                        doc = change.get("doc") or {}
                        if doc.get("type") == "Event":
                            self.events.setdefault(str(doc["_id"]), seen)
                        elif doc.get("type") == "Task":
                            self.tasks.setdefault((str(doc.get("for")), str(doc.get("code"))), seen)
                self.since = page.last_seq
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def has(self, event_id: str, entity: str) -> bool:
        with self._lock:
            return event_id in self.events and all((entity, code) in self.tasks for code in CODES)


# --------------------------------------------------------------------------------------------- the worker


def start_worker(server: Server, log_path: Path) -> subprocess.Popen[bytes]:
    """``fieldsync work plans`` against the benchmark's server, logging warnings to ``log_path``."""
    env = dict(os.environ)
    env.update({"FIELDSYNC_COUCH_URL": server.settings.admin_url(), "FIELDSYNC_DATA_DIR": str(server.data_dir),
                "FIELDSYNC_DB_PREFIX": server.settings.db_prefix, "FIELDSYNC_LOG_LEVEL": "WARNING",
                "FIELDSYNC_LOG_FORMAT": "text"})
    script = Path(sys.executable).with_name("fieldsync")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "workers.cli"]
    with open(log_path, "wb") as log_file:
        return subprocess.Popen([*cmd, "work", "plans"], env=env, stdout=log_file, stderr=subprocess.STDOUT)


def stop_worker(proc: subprocess.Popen[bytes]) -> int | None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


def wait_caught_up(couch: Couch, db: str, timeout: float = 60.0) -> bool:
    """Until the plan worker's checkpoint on ``db`` reaches the database's update sequence."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        checkpoint = couch.get_local(db, "fieldsync-plans") or {}
        if str(checkpoint.get("seq")) == str(couch.update_seq(db)):
            return True
        time.sleep(0.2)
    return False


# --------------------------------------------------------------------------------------------- the run


def measure(devices: int, events: int, rounds: int, structures: int, timeout: float) -> dict[str, Any]:
    size = area_size(structures, per_area=max(1, min(500, structures // max(1, devices // 5))))
    out: dict[str, Any] = {"devices": devices, "events_per_device": events, "rounds": rounds,
                           "structures": size.areas * size.structures_per_area, "areas": size.areas}
    dev_root = Path(tempfile.mkdtemp(prefix="fieldsync-bench-devices-"))
    with bench_server() as server:
        couch, settings = server.couch, server.settings
        main_db = settings.dbs.main
        started = time.perf_counter()
        out["documents"] = load(couch, main_db, operational_areas(SEED, size))
        plan = irs_plan(uid(SEED, "district"))
        couch.put(main_db, plan)
        out["activation_s"], _ = run_workers(couch, settings, ["plans"])
        out["setup_s"] = time.perf_counter() - started
        counted = couch.view(main_db, "fieldsync", "tasks_by_plan_status", reduce=True)
        out["tasks_before"] = int(counted[0]["value"]) if counted else 0

        # the reference: the server's own write-then-read round trip, idle, same run
        rtt = raw_round_trips(couch, fresh_db(couch, "benchraw-rtt"), 200)
        out["rtt_p50_ms"] = percentile(rtt, 0.5) * 1000
        out["rtt"] = rtt

        worker = start_worker(server, server.data_dir / "worker.log")
        watcher = Watcher(Couch.from_settings(settings), main_db, couch.update_seq(main_db))
        watcher.start()
        fleet: list[Device] = []
        try:
            out["worker_ready"] = wait_caught_up(couch, main_db)
            started = time.perf_counter()
            for i in range(devices):
                fleet.append(Device(dev_root / f"d{i:03d}", f"device-{i:03d}"))
            with ThreadPoolExecutor(max_workers=devices) as pool:
                list(pool.map(lambda d: d.call("info", db="main"), fleet))
                out["devices_start_s"] = time.perf_counter() - started
                url = f"{settings.admin_url()}/{main_db}"
                areas = area_ids(SEED, size)
                pushes: list[float] = []
                expected: list[tuple[str, str]] = []  # (event id, structure id)
                failures: list[str] = []
                rounds_s: list[float] = []
                for r in range(rounds):
                    batch: list[list[tuple[str, str]]] = []
                    for i, device in enumerate(fleet):
                        area = areas[i % len(areas)]
                        mine = []
                        for k in range(events):
                            sid = uid(SEED, "new-structure", i, r, k)
                            eid = uid(SEED, "event", i, r, k)
                            device.put("main", structure(sid, area, "Residential Structure",
                                                         100.0 + i * 0.001, 14.0 + k * 0.001))
                            device.put("main", register_structure_event(eid, sid, area, str(plan["_id"]),
                                                                        device.name))
                            mine.append((eid, sid))
                        batch.append(mine)
                    barrier = threading.Barrier(devices)

                    def push(device: Device, barrier: threading.Barrier = barrier) -> tuple[float, dict[str, Any]]:
                        barrier.wait()
                        began = time.perf_counter()
                        result = device.push("main", url)
                        return time.perf_counter() - began, result

                    round_start = time.perf_counter()
                    for seconds, result in pool.map(push, fleet):
                        pushes.append(seconds)
                        if result.get("doc_write_failures") or not result.get("ok", True):
                            failures.append(str(result.get("errors"))[:300])
                    wanted = [pair for mine in batch for pair in mine]
                    expected += wanted
                    deadline = time.monotonic() + timeout
                    while time.monotonic() < deadline and not all(watcher.has(e, s) for e, s in wanted):
                        if watcher.error is not None or worker.poll() is not None:
                            break
                        time.sleep(0.05)
                    rounds_s.append(time.perf_counter() - round_start)
        finally:
            with ThreadPoolExecutor(max_workers=max(1, len(fleet))) as closer:
                list(closer.map(lambda d: d.close(), fleet))
            watcher.halt.set()
            out["worker_exit"] = stop_worker(worker)
            watcher.join(timeout=15)
        if watcher.error is not None:
            raise RuntimeError(f"the _changes watcher failed: {watcher.error}")
        log_text = (server.data_dir / "worker.log").read_text(errors="replace")
        out["worker_log_tail"] = log_text[-2000:]
        out["pushes"] = pushes
        out["push_failures"] = failures
        out["rounds_s"] = rounds_s
        out["parked"] = audit_count(couch, settings, "parked")
        latency_all: list[float] = []
        latency_by_code: dict[str, list[float]] = {code: [] for code in CODES}
        missing = 0
        for eid, sid in expected:
            seen = watcher.events.get(eid)
            stamps = [watcher.tasks.get((sid, code)) for code in CODES]
            if seen is None or any(s is None for s in stamps):
                missing += 1
                continue
            for code, stamp in zip(CODES, stamps, strict=True):
                assert stamp is not None
                latency_by_code[code].append(stamp - seen)
            latency_all.append(max(s for s in stamps if s is not None) - seen)
        out["events"] = len(expected)
        out["events_seen"] = sum(1 for eid, _ in expected if eid in watcher.events)
        out["missing"] = missing
        out["latency_all"] = latency_all
        out["latency_by_code"] = latency_by_code
        out["rss_mib"] = maxrss_mib()
    shutil.rmtree(dev_root, ignore_errors=True)
    return out


def report(m: dict[str, Any]) -> None:
    print(f"{m['devices']} simulated devices (Node PouchDB, LevelDB) pushing {m['events_per_device']} "
          f"Register_Structure event(s) + structure(s) each, all at once, {m['rounds']} round(s): "
          f"{m['events']:,} events")
    print(f"  set-up           {m['setup_s']:8.1f} s  {m['documents']:,} documents ({m['structures']:,} structures "
          f"in {m['areas']} areas), Dynamic-IRS active, activation {m['activation_s']:.1f} s, "
          f"{m['tasks_before']:,} tasks")
    print("  replication      devices push straight into the main database as the admin (no per-device target)")
    print(f"  plan worker      `fieldsync work plans` subprocess (woken by a longpoll of the main feed), "
          f"caught up before the devices: {m['worker_ready']}, exit {m['worker_exit']}, {m['parked']} parked")
    print(f"  devices start    {m['devices_start_s']:8.1f} s  for {m['devices']} processes")
    print(f"  push (ms)        {spread(m['pushes'])}  per device replication, all at once; rounds "
          + ", ".join(f"{s:.1f}" for s in m["rounds_s"]) + " s to the last task")
    if m["push_failures"]:
        print(f"  push failures    {len(m['push_failures'])}, e.g. {m['push_failures'][0]}")
    print(f"  events seen      {m['events_seen']:,} of {m['events']:,} in main's _changes; "
          f"{m['missing']} without both follow-on tasks in time")
    print(f"  event -> tasks   {spread(m['latency_all'])}  ms (event seen -> both tasks seen)")
    for code, values in m["latency_by_code"].items():
        print(f"    {code:<18} {spread(values)}  ms")
    print(f"  raw round trip   {spread(m['rtt'])}  ms (one PUT + GET, sequential, idle server)")
    if m["latency_all"] and m["rtt_p50_ms"] > 0:
        p50 = percentile(m["latency_all"], 0.5) * 1000
        p95 = percentile(m["latency_all"], 0.95) * 1000
        print(f"  ratio            p50 {p50 / m['rtt_p50_ms']:6.1f}x  p95 {p95 / m['rtt_p50_ms']:6.1f}x "
              f"the raw round trip's p50")
    print(f"  peak RSS         {m['rss_mib']:8.1f} MiB (this process; devices and worker are other processes)")
    if m["missing"] or m["worker_exit"] not in (0, -15) or m["parked"]:
        print("  worker log tail:\n" + m["worker_log_tail"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=50, help="simulated devices (Node processes), default 50")
    parser.add_argument("--events", type=int, default=2, help="events (each with a new structure) per device "
                        "per round, default 2")
    parser.add_argument("--rounds", type=int, default=3, help="pushes of every device at once, default 3")
    parser.add_argument("--structures", type=int, default=1000, help="generated structures before, default 1000")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for a round's tasks")
    add_server_args(parser)
    args = parser.parse_args(argv)
    use_server_args(args)
    if shutil.which("node") is None:
        print("node is needed for the simulated devices", file=sys.stderr)
        return 2
    quiet_logs()
    report(measure(args.devices, args.events, args.rounds, args.structures, args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
