"""Benchmark: the plan worker's activation of the Dynamic-FI plan against a real (embedded) server.

Generates operational areas of ~500 structures (``demo.synthetic``: a family per residential structure and
its members), loads them, lets the plan worker digest the synced data (``Runner.run(until_idle=True)``), then
sets the plan active and times the worker's activation (``Runner.run(until_idle=True)`` again). In the same
run, the tasks the activation produced are copied (``_rev`` stripped) and written raw, with ``_bulk_docs`` of
500, into a fresh database: the server's own rate for the same documents. Prints tasks/s of both and the
ratio (worker / raw; the issue's target is >= 0.5). Figures only: never a pass/fail on time.

``--memory`` runs the activation at 10,000 and at 50,000 structures, each in a subprocess of its own (with its
own server), and prints each process's peak RSS and tracemalloc peak during the activation: the peaks should
be flat, not proportional to the structures.

    .venv/bin/python bench/workers_activation.py [--structures 20000] [--per-area 500]
    .venv/bin/python bench/workers_activation.py --memory [--sizes 10000,50000] [--no-tracemalloc]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    activate,
    add_server_args,
    area_size,
    bench_server,
    fresh_db,
    maxrss_mib,
    quiet_logs,
    rate,
    raw_bulk_docs,
    run_workers,
    seed_areas,
    server_args,
    strip_rev,
    use_server_args,
)
from workers.plans import activation

SEED = "bench-activation"


def measure(structures: int, per_area: int, *, raw: bool, trace: bool) -> dict[str, Any]:
    size = area_size(structures, per_area)
    out: dict[str, Any] = {"structures": size.areas * size.structures_per_area, "areas": size.areas}
    with bench_server() as server:
        couch, settings = server.couch, server.settings
        started = time.perf_counter()
        docs, plan = seed_areas(couch, settings, SEED, size)
        out["documents"] = docs
        out["load_s"] = time.perf_counter() - started
        out["digest_s"], stats = run_workers(couch, settings, ["plans"])
        out["digest_changes"] = stats.changes
        out["rss_before_activation_mib"] = maxrss_mib()
        activate(couch, settings, str(plan["_id"]))
        if trace:
            tracemalloc.start()
        out["activation_s"], stats = run_workers(couch, settings, ["plans"])
        if trace:
            out["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        out["rss_after_activation_mib"] = maxrss_mib()
        progress = couch.get_local(settings.dbs.main, activation.progress_name(str(plan["_id"]))) or {}
        out["state"] = progress.get("state")
        out["tasks"] = int(progress.get("tasks", 0))
        out["tasks_written"] = int(progress.get("tasksWritten", 0))
        out["entities"] = int(progress.get("entities", 0))
        out["parked"] = stats.parked
        if raw:
            rows = couch.iter_view(settings.dbs.main, "fieldsync", "tasks_by_plan_status", reduce=False,
                                   include_docs=True)
            tasks = [strip_rev(row["doc"]) for row in rows if row.get("doc")]
            out["raw_tasks"] = len(tasks)
            db = fresh_db(couch, "benchraw-tasks")
            out["raw_s"] = raw_bulk_docs(couch, db, tasks)
    return out


def report(m: dict[str, Any]) -> None:
    print(f"Dynamic-FI activation by the plan worker: {m['structures']:,} structures in {m['areas']} areas "
          f"({m['documents']:,} documents, {m['entities']:,} entities walked)")
    print(f"  load             {m['load_s']:8.1f} s")
    print(f"  digest (draft)   {m['digest_s']:8.1f} s  {m['digest_changes']:,} changes "
          f"({rate(m['digest_changes'], m['digest_s']):,.0f} changes/s)")
    worker = rate(m["tasks_written"], m["activation_s"])
    print(f"  activation       {m['activation_s']:8.1f} s  {m['tasks_written']:,} tasks written "
          f"({m['tasks']:,} decided, state {m['state']}, {m['parked']} parked)  {worker:8,.0f} tasks/s")
    if "raw_s" in m:
        raw = rate(m["raw_tasks"], m["raw_s"])
        print(f"  raw _bulk_docs   {m['raw_s']:8.1f} s  {m['raw_tasks']:,} tasks (same documents, fresh db, "
              f"chunks of 500)  {raw:8,.0f} tasks/s")
        print(f"  ratio            {worker / raw:8.2f}  (worker tasks/s / raw _bulk_docs tasks/s; target >= 0.5)")
    print(f"  peak RSS         {m['rss_after_activation_mib']:8.1f} MiB "
          f"(before activation {m['rss_before_activation_mib']:.1f} MiB)")
    if "tracemalloc_peak_mib" in m:
        print(f"  tracemalloc peak {m['tracemalloc_peak_mib']:8.1f} MiB during the activation")


def memory(sizes: list[int], per_area: int, trace: bool) -> int:
    results = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--structures", str(n), "--per-area", str(per_area), "--child",
               *server_args()]
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
        return memory(sizes, args.per_area, not args.no_tracemalloc)
    if args.child:
        print(json.dumps(measure(args.structures, args.per_area, raw=False, trace=args.trace)))
        return 0
    report(measure(args.structures, args.per_area, raw=True, trace=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
