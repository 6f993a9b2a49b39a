"""Benchmark: the plan worker's activation of a plan against a real server (embedded, or ``--couch-url``).

Generates operational areas of ~500 structures (``demo.synthetic``: a family per residential structure and
its members; with ``--plan irs`` the structures only, as Dynamic-IRS needs), loads them, lets the plan worker
digest the synced data (``Runner.run(until_idle=True)``: its read model is built), then sets the
plan active and times the worker's activation as ``fieldsync work`` runs it (``Runner.run(stop)``: the
feed read by a thread of its own, the activation in its chore thread) until its progress says done; with
``--rounds``, in rounds until idle instead (``Runner.run(until_idle=True)``, as the tests and the demo run it:
one thread reads the feed and evaluates in turn). In the same run, the
tasks the activation produced are copied (``_rev`` stripped) and written raw, with ``_bulk_docs`` of 500, into a
fresh database: the server's own rate for the same documents. Prints tasks/s of both and the ratio (worker /
raw; the issue's target is >= 0.5), then the read model's size on disk and the time to rebuild it (a new
file: a snapshot of the main database, then its feed). Figures only: never a pass/fail on time.

``--repeat N`` activates N plans one after the other on the same data, each followed by its own raw pass (a
shared machine drifts: each ratio compares two passes minutes apart, and the median of several is steadier).

``--memory`` runs the activation at 10,000 and at 50,000 structures, each in a subprocess of its own (with its
own server), and prints each process's peak RSS and tracemalloc peak during the activation: the peaks should
be flat, not proportional to the structures.

    .venv/bin/python bench/workers_activation.py [--structures 20000] [--per-area 500] [--plan fi|irs] [--repeat N]
                                                 [--rounds]
    .venv/bin/python bench/workers_activation.py --memory [--sizes 10000,50000] [--no-tracemalloc]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    CHUNK,
    ServerCpu,
    activate,
    add_server_args,
    area_size,
    bench_server,
    fresh_db,
    load,
    maxrss_mib,
    quiet_logs,
    rate,
    raw_bulk_docs,
    run_workers,
    run_workers_awake,
    server_args,
    settle_background,
    strip_rev,
    use_server_args,
)
from couch_design.loader import design_docs_for
from demo.synthetic import operational_areas, uid
from workers.couch import Couch, Doc
from workers.evaluator.templates import new_plan_from_template
from workers.plans import activation
from workers.plans.worker import readmodel_path
from workers.readmodel.feed import ReadModel
from workers.readmodel.store import Store
from workers.settings import Settings

SEED = "bench-activation"
RAW_GROUP = 20  # areas (of ~500 structures) read from the read model per step of the raw pass


PLANS = {"fi": "Dynamic-FI", "irs": "Dynamic-IRS"}


def _documents(kind: str, structures: int, per_area: int) -> Iterator[Doc]:
    docs = operational_areas(SEED, area_size(structures, per_area))
    if kind == "irs":  # Dynamic-IRS visits structures: no families or members needed
        return (d for d in docs if d.get("type") == "Feature")
    return iter(docs)


def seed(couch: Couch, settings: Settings, kind: str, structures: int, per_area: int) -> tuple[int, int, int]:
    """Load the areas; returns (structures, areas, documents written)."""
    size = area_size(structures, per_area)
    written = load(couch, settings.dbs.main, _documents(kind, structures, per_area))
    return size.areas * size.structures_per_area, size.areas, written


def new_plan(couch: Couch, settings: Settings, kind: str, n: int) -> Doc:
    plan = new_plan_from_template(PLANS[kind], uid(SEED, "district"), f"bench {n}", date(2026, 11, 1),
                                  date(2026, 12, 31), datetime(2026, 11, 1, tzinfo=UTC))
    couch.put(settings.dbs.main, dict(plan))
    return plan


def activation_pass(couch: Couch, settings: Settings, kind: str, n: int, *, raw: bool,
                    trace: bool, awake: bool = True, loaded: tuple[str, int, int] | None = None,
                    raw_views: bool = True, settle_s: float = 900.0) -> dict[str, Any]:
    """One plan created, digested, activated and timed; then (``raw``) its tasks written raw. ``awake``: the
    worker runs as ``fieldsync work`` runs it (feeds read by threads of their own, the activation in its chore
    thread), timed until its progress says done; else in rounds until idle (``--until-idle``, the tests)."""
    plan = new_plan(couch, settings, kind, n)
    run_workers(couch, settings, ["plans"])
    out: dict[str, Any] = {}
    # the activation starts on a settled server, as the raw passes do: the main database's views indexing the
    # load (or the last raw pass) would otherwise compete with its writes (session 10)
    out["settle_before_s"] = settle_background(couch, timeout=settle_s, views_of=settings.dbs.main)
    _progress(f"the server's background work before the activation ended {out['settle_before_s']:.1f} s later")
    activate(couch, settings, str(plan["_id"]))
    if trace:
        tracemalloc.start()
    cpu, server_cpu = time.process_time(), ServerCpu(settings.couch_url)
    _progress(f"activation {n + 1} starting")
    if awake:
        name = activation.progress_name(str(plan["_id"]))

        def finished() -> bool:
            return (couch.get_local(settings.dbs.main, name) or {}).get("state") in (activation.DONE,
                                                                                     activation.FAILED)

        out["activation_s"], stats = run_workers_awake(couch, settings, ["plans"], finished)
    else:
        out["activation_s"], stats = run_workers(couch, settings, ["plans"])
    out["cpu_s"] = time.process_time() - cpu  # the worker's own CPU (every thread): what it leaves the server
    out["server_cpu_s"] = server_cpu.take()
    out["rss_after_activation_mib"] = maxrss_mib()  # before the raw pass
    _progress(f"activation {n + 1}: {out['activation_s']:.1f} s, peak RSS {out['rss_after_activation_mib']:.1f} MiB")
    if trace:
        out["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    progress = couch.get_local(settings.dbs.main, activation.progress_name(str(plan["_id"]))) or {}
    out["state"] = progress.get("state")
    out["tasks"] = int(progress.get("tasks", 0))
    out["tasks_written"] = int(progress.get("tasksWritten", 0))
    out["entities"] = int(progress.get("entities", 0))
    out["parked"] = stats.parked
    if raw:
        # the raw passes measure the server alone: the main database's views and compactions that the
        # activation's writes set going are let finish first (they went on during a raw pass right after the
        # activation and slowed it 2-4x: sessions 5 and 6's ratios of 0.45-0.63 were against such a pass)
        out["settle_s"] = settle_background(couch, timeout=settle_s, views_of=settings.dbs.main)
        _progress(f"the server's background work after the activation ended {out['settle_s']:.1f} s later")
        out["raw_tasks"], out["raw_s"], out["raw_server_cpu_s"] = raw_pass(couch, settings, str(plan["identifier"]))
        _progress(f"raw pass: {out['raw_tasks']:,} tasks in {out['raw_s']:.1f} s")
        if raw_views:
            settle_background(couch, timeout=settle_s)
            out["raw_views_tasks"], out["raw_views_s"], _ = raw_pass(couch, settings, str(plan["identifier"]),
                                                                     views=True)
            _progress(f"raw pass with the main database's views: {out['raw_views_tasks']:,} tasks in "
                      f"{out['raw_views_s']:.1f} s")
        if loaded:
            settle_background(couch, timeout=settle_s)
            out["raw_loaded_tasks"], out["raw_loaded_s"], out["raw_loaded_server_cpu_s"] = raw_pass(
                couch, settings, str(plan["identifier"]), loaded=loaded)
            _progress(f"raw pass into a database loaded like main: {out['raw_loaded_tasks']:,} tasks in "
                      f"{out['raw_loaded_s']:.1f} s")
    return out


def _progress(line: str) -> None:
    """A phase done, on stderr at once: a run of hours shows where it is (the figures come at the end)."""
    print(f"  [{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def raw_pass(couch: Couch, settings: Settings, plan_identifier: str, *, views: bool = False,
             loaded: tuple[str, int, int] | None = None) -> tuple[int, float, float | None]:
    """The plan's tasks (``_rev`` stripped) written raw into a fresh database: (count, s of writing only, the
    server's CPU seconds while writing, None when it is not a local process).
    They are read from the worker's read model, not a view (the first query of a view over 100,000s of
    documents would build its index in the middle of the run), ``RAW_GROUP`` areas at a time: a million tasks
    are never in memory at once. ``views``: the fresh database holds the main database's design documents, so
    the server maintains the same views while it takes the writes (CouchDB 3 indexes them in the background
    after each write), as it does during the activation. ``loaded`` (kind, structures, per area): the database
    first holds the documents the main database held before the activation (loaded again, not timed), so
    that the writes go into a database of the same size."""
    store = Store(readmodel_path(settings))
    db = fresh_db(couch, "benchraw-loaded" if loaded else "benchraw-views" if views else "benchraw-tasks")
    if views or loaded:
        couch.save_many(db, design_docs_for("main"))
    if loaded:
        kind, structures, per_area = loaded
        load(couch, db, _documents(kind, structures, per_area))
        settle_background(couch, views_of=db)
    count, seconds = 0, 0.0
    server_cpu, cpu_s = ServerCpu(settings.couch_url), 0.0
    try:
        keys = store.keys_of("task-group", plan_identifier)
        for start in range(0, len(keys), RAW_GROUP):
            found = store.by_key("task-group", keys[start : start + RAW_GROUP], plan_identifier)
            tasks = [strip_rev(doc) for docs in found.values() for doc in docs]
            server_cpu.take()
            seconds += raw_bulk_docs(couch, db, tasks, chunk=CHUNK)
            cpu_s += server_cpu.take() or 0.0
            count += len(tasks)
    finally:
        store.close()
    couch.delete_db(db)
    return count, seconds, cpu_s if server_cpu.pid else None


def rebuild(couch: Couch, settings: Settings, data_dir: Path) -> dict[str, Any]:
    """The worker's read model on disk, and a rebuild of it from the feed into a new file, timed."""
    held = Store.peek(readmodel_path(settings)) or {}
    path = data_dir / "rebuild" / "main.sqlite"
    model = ReadModel(couch, settings.dbs.main, path)
    started = time.perf_counter()
    changes = model.catch_up()
    seconds = time.perf_counter() - started
    out = {"index_bytes": int(held.get("bytes", 0)), "index_docs": int(held.get("docs", 0)),
           "rebuild_s": seconds, "rebuild_changes": changes, "rebuild_docs": model.store.count(),
           "rebuild_bytes": model.store.size_bytes()}
    model.close()
    return out


def measure(structures: int, per_area: int, *, raw: bool, trace: bool, kind: str = "fi",
            repeat: int = 1, awake: bool = True, raw_loaded: bool = False, raw_views: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"plan": PLANS[kind], "mode": "awake" if awake else "rounds"}
    with bench_server() as server:
        couch, settings = server.couch, server.settings
        started = time.perf_counter()
        out["structures"], out["areas"], out["documents"] = seed(couch, settings, kind, structures, per_area)
        out["load_s"] = time.perf_counter() - started
        _progress(f"loaded {out['documents']:,} documents in {out['load_s']:.1f} s")
        out["digest_s"], stats = run_workers(couch, settings, ["plans"])
        out["digest_changes"] = stats.changes
        out["rss_before_activation_mib"] = maxrss_mib()
        _progress(f"digested {stats.changes:,} changes in {out['digest_s']:.1f} s; "
                  f"RSS {out['rss_before_activation_mib']:.1f} MiB")
        loaded = (kind, structures, per_area) if raw_loaded else None
        # the server's indexing of what a pass wrote is waited out, longer for more: 900,000 tasks take minutes
        settle_s = max(900.0, structures / 250)
        out["passes"] = [activation_pass(couch, settings, kind, n, raw=raw, trace=trace, awake=awake, loaded=loaded,
                                         raw_views=raw_views, settle_s=settle_s)
                        for n in range(repeat)]
        out.update(out["passes"][0])  # the peak RSS of the first activation: later ones follow a raw pass
        if raw:
            out.update(rebuild(couch, settings, server.data_dir))
            _progress(f"rebuild: {out['rebuild_docs']:,} documents in {out['rebuild_s']:.1f} s")
    return out


def report(m: dict[str, Any]) -> None:
    print(f"{m['plan']} activation by the plan worker: {m['structures']:,} structures in {m['areas']} areas "
          f"({m['documents']:,} documents, {m['entities']:,} entities walked); the worker run "
          + ("awake, as `fieldsync work` runs it" if m["mode"] == "awake" else "in rounds until idle (--rounds)"))
    print(f"  load             {m['load_s']:8.1f} s")
    print(f"  digest (draft)   {m['digest_s']:8.1f} s  {m['digest_changes']:,} changes "
          f"({rate(m['digest_changes'], m['digest_s']):,.0f} changes/s; the read model built from the feed)")
    ratios = []
    for n, p in enumerate(m["passes"], 1):
        worker = rate(p["tasks_written"], p["activation_s"])
        print(f"  activation {n:<5} {p['activation_s']:8.1f} s  {p['tasks_written']:,} tasks written "
              f"({p['tasks']:,} decided, state {p['state']}, {p['parked']} parked)  {worker:8,.0f} tasks/s")
        print(f"  worker CPU       {p['cpu_s']:8.1f} s  ({p['cpu_s'] / p['activation_s']:.2f} of a core on average, "
              f"{p['cpu_s'] / max(1, p['tasks_written']) * 1e6:,.0f} us per task)")
        if "raw_s" in p:
            raw = rate(p["raw_tasks"], p["raw_s"])
            ratios.append(worker / raw)
            print(f"  raw _bulk_docs   {p['raw_s']:8.1f} s  {p['raw_tasks']:,} tasks (same documents, fresh db, "
                  f"chunks of {CHUNK})  {raw:8,.0f} tasks/s")
            print(f"  ratio            {ratios[-1]:8.2f}  (worker tasks/s / raw _bulk_docs tasks/s; target >= 0.5)")
            if p.get("server_cpu_s") is not None and p.get("raw_server_cpu_s") is not None:
                per_task = 1e6 / max(1, p["tasks_written"])
                print(f"  server CPU       {p['server_cpu_s']:8.1f} s  during the activation "
                      f"({p['server_cpu_s'] * per_task:,.0f} us per task), {p['raw_server_cpu_s']:.1f} s during the "
                      f"raw pass ({p['raw_server_cpu_s'] * 1e6 / max(1, p['raw_tasks']):,.0f} us per task); its "
                      "processes, from /proc")
            print(f"  settled          {p.get('settle_s', 0.0):8.1f} s  (the server's indexing and compaction "
                  f"after the activation, waited out before the raw passes; before it: "
                  f"{p.get('settle_before_s', 0.0):.1f} s)")
        if "raw_views_s" in p:
            with_views = rate(p["raw_views_tasks"], p["raw_views_s"])
            print(f"  raw, with views  {p['raw_views_s']:8.1f} s  the same into a fresh db holding the main database's "
                  f"design documents  {with_views:8,.0f} tasks/s: ratio {worker / with_views:.2f}")
        if "raw_loaded_s" in p:
            loaded = rate(p["raw_loaded_tasks"], p["raw_loaded_s"])
            print(f"  raw, loaded db   {p['raw_loaded_s']:8.1f} s  the same into a db holding what main held before "
                  f"the activation (and its design documents)  {loaded:8,.0f} tasks/s: ratio {worker / loaded:.2f}")
            if p.get("raw_loaded_server_cpu_s") is not None:
                print(f"                   server CPU {p['raw_loaded_server_cpu_s']:.1f} s during that pass")
    if len(ratios) > 1:
        print(f"  median ratio     {statistics.median(ratios):8.2f}  of {len(ratios)} "
              f"({', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"  peak RSS         {m['rss_after_activation_mib']:8.1f} MiB "
          f"(before activation {m['rss_before_activation_mib']:.1f} MiB)")
    if "tracemalloc_peak_mib" in m:
        print(f"  tracemalloc peak {m['tracemalloc_peak_mib']:8.1f} MiB during the activation")
    if "rebuild_s" in m:
        print(f"  read model       {m['index_bytes'] / 2**20:8.1f} MiB on disk, {m['index_docs']:,} documents")
        print(f"  rebuild          {m['rebuild_s']:8.1f} s  {m['rebuild_changes']:,} changes read from the feed "
              f"({rate(m['rebuild_changes'], m['rebuild_s']):,.0f}/s) into a new file of "
              f"{m['rebuild_bytes'] / 2**20:.1f} MiB")


def memory(sizes: list[int], per_area: int, trace: bool, kind: str) -> int:
    results = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--structures", str(n), "--per-area", str(per_area), "--child",
               "--plan", kind, *server_args()]
        if trace:
            cmd.append("--trace")
        print(f"  running {n:,} structures in a subprocess ...", flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return done.returncode
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print("Peak memory of the plan-worker process (load, digest and activation, no raw pass):")
    for m in results:
        line = (f"  {m['structures']:>7,} structures  {m['tasks_written']:>8,} tasks  activation "
                f"{m['activation_s']:7.1f} s  peak RSS {m['rss_after_activation_mib']:7.1f} MiB "
                f"(before activation {m['rss_before_activation_mib']:.1f})")
        if "tracemalloc_peak_mib" in m:
            line += f"  tracemalloc peak {m['tracemalloc_peak_mib']:7.1f} MiB"
        print(line)
    if len(results) >= 2:
        a, b = results[0], results[-1]
        print(f"  growth: {b['structures'] / a['structures']:.1f}x structures -> "
              f"{b['rss_after_activation_mib'] / a['rss_after_activation_mib']:.2f}x peak RSS"
              + (f", {b['tracemalloc_peak_mib'] / a['tracemalloc_peak_mib']:.2f}x tracemalloc peak"
                 if "tracemalloc_peak_mib" in a else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--structures", type=int, default=20_000)
    parser.add_argument("--per-area", type=int, default=500)
    parser.add_argument("--plan", choices=sorted(PLANS), default="fi",
                        help="fi: Dynamic-FI over structures, families and members (default); irs: Dynamic-IRS "
                        "over structures only")
    parser.add_argument("--repeat", type=int, default=1, help="activations (each with its raw pass) on the same data")
    parser.add_argument("--rounds", action="store_true",
                        help="time the activation in rounds until idle (--until-idle, the tests' way), not awake as "
                        "`fieldsync work` runs it")
    parser.add_argument("--raw-loaded", action="store_true",
                        help="a third raw pass, into a database loaded with what main held before the activation")
    parser.add_argument("--no-raw-views", action="store_true",
                        help="skip the raw pass into a fresh database holding main's design documents (long at "
                             "1,000,000 structures: the views' indexing is waited out after it)")
    parser.add_argument("--memory", action="store_true", help="peak memory at --sizes, one subprocess each")
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--no-tracemalloc", action="store_true", help="--memory: RSS only (faster)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    add_server_args(parser)
    args = parser.parse_args(argv)
    use_server_args(args)
    quiet_logs()
    if args.memory:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
        return memory(sizes, args.per_area, not args.no_tracemalloc, args.plan)
    if args.child:
        print(json.dumps(measure(args.structures, args.per_area, raw=False, trace=args.trace, kind=args.plan)))
        return 0
    report(measure(args.structures, args.per_area, raw=True, trace=False, kind=args.plan, repeat=args.repeat,
                   awake=not args.rounds, raw_loaded=args.raw_loaded, raw_views=not args.no_raw_views))
    return 0


if __name__ == "__main__":
    sys.exit(main())
