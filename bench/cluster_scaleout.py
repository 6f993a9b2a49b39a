"""Benchmark: plan-worker scale-out on a 3-node Apache CouchDB cluster: 1, 2 and 3 worker processes
(``FIELDSYNC_WORKER_SHARD=i/n``, worker ``i`` talking to node ``i`` first) activating the Dynamic-FI plan over the
same number of structures, against the cluster's raw ``_bulk_docs`` rate through all three nodes at once, in the
same run.

For each n: generated areas are loaded under a database prefix of their own, n ``fieldsync work plans
--until-idle`` processes digest them (each its own read model), the plan is set active and n processes run the
activation until idle; its wall time gives tasks/s. The raw rate: the tasks of the 1-process run (``_rev``
stripped) written with ``_bulk_docs`` of 500 by three processes at once, each through a different node into a
fresh database of its own. Prints tasks/s, the ratio to raw, and the scaling efficiency (rate(n) / (n x rate(1))).
Figures only: never a pass/fail on time.

Starts a 3-node cluster of its own with ``../shared/couchdb/couchdb3 cluster`` (stopped at the end whatever
happens), or measures one given with ``--couch-url http://ADMIN:PW@n1:PORT,http://n2:PORT,http://n3:PORT``.

    .venv/bin/python bench/cluster_scaleout.py [--structures 20000] [--workers 1,2,3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    Server,
    activate,
    add_server_args,
    area_size,
    bench_server,
    free_port,
    fresh_db,
    quiet_logs,
    rate,
    raw_bulk_docs,
    seed_areas,
    strip_rev,
    use_server_args,
)
from workers.couch import Couch

SEED = "bench-scaleout"
COUCHDB3 = Path(__file__).resolve().parents[2] / "shared" / "couchdb" / "couchdb3"


@contextmanager
def own_cluster() -> Iterator[str]:
    """A 3-node cluster on free loopback ports in a temporary directory; its multi-node URL."""
    with tempfile.TemporaryDirectory(prefix="fieldsync-bench-cluster-") as tmp:
        password = secrets.token_hex(12)
        while True:
            port = free_port()
            if port + 2 < 65536:
                break
        try:
            subprocess.run([str(COUCHDB3), "cluster", tmp, str(port), "bench", password, "3"], check=True,
                           stdout=subprocess.DEVNULL, timeout=600)
            yield f"http://bench:{password}@127.0.0.1:{port},http://127.0.0.1:{port + 1},http://127.0.0.1:{port + 2}"
        finally:
            subprocess.run([str(COUCHDB3), "stop", tmp], check=False, timeout=300)


def _workers(server: Server, n: int, data: Path) -> float:
    """n ``work plans --until-idle`` processes, shard i/n each; seconds until the last one exits."""
    procs = []
    started = time.perf_counter()
    for i in range(n):
        env = {**os.environ, "FIELDSYNC_COUCH_URL": server.settings.env_url(), "FIELDSYNC_DB_PREFIX":
               server.settings.db_prefix, "FIELDSYNC_DATA_DIR": str(data / f"w{i}"), "FIELDSYNC_WORKER_SHARD":
               f"{i}/{n}", "FIELDSYNC_LOG_LEVEL": "WARNING", "FIELDSYNC_LOG_FORMAT": "json"}
        procs.append(subprocess.Popen([sys.executable, "-m", "workers.cli", "work", "plans", "--until-idle"],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=7200)
        if proc.returncode != 0:
            raise RuntimeError(f"a worker failed ({proc.returncode}): {err[-2000:]}")
    return time.perf_counter() - started


def _task_docs(couch: Couch, db: str) -> list[dict[str, Any]]:
    rows = couch.iter_view(db, "fieldsync", "tasks_by_plan_status", reduce=False, include_docs=True)
    return [strip_rev(row["doc"]) for row in rows if row.get("doc")]


def measure_workers(n: int, structures: int, per_area: int) -> dict[str, Any]:
    out: dict[str, Any] = {"workers": n}
    with bench_server(timeout=300) as server, tempfile.TemporaryDirectory(prefix="fieldsync-scaleout-") as tmp:
        couch, settings = server.couch, server.settings
        size = area_size(structures, per_area)
        out["structures"] = size.areas * size.structures_per_area
        started = time.perf_counter()
        out["documents"], plan = seed_areas(couch, settings, SEED, size)
        out["load_s"] = time.perf_counter() - started
        out["digest_s"] = _workers(server, n, Path(tmp))
        activate(couch, settings, str(plan["_id"]))
        out["activation_s"] = _workers(server, n, Path(tmp))
        tasks = _task_docs(couch, settings.dbs.main)
        out["tasks"] = len(tasks)
        out["unique"] = len({t["_id"] for t in tasks})
        if n == 1:
            out["task_docs"] = tasks
    return out


def _raw_part(url: str, credentials: tuple[str, str] | None, db: str, docs: list[dict[str, Any]]) -> float:
    return raw_bulk_docs(Couch(url, credentials, timeout=300), db, docs)


def measure_raw(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """The tasks written by three processes at once, each through another node into its own fresh database."""
    with bench_server(timeout=300) as server:
        couch, settings = server.couch, server.settings
        nodes = settings.couch_nodes
        dbs = [fresh_db(couch, f"benchraw-node{i + 1}") for i in range(len(nodes))]
        parts = [tasks[i :: len(nodes)] for i in range(len(nodes))]
        started = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(len(nodes)) as pool:
            pool.starmap(_raw_part, [(nodes[i], settings.credentials, dbs[i], parts[i]) for i in range(len(nodes))])
        seconds = time.perf_counter() - started
    return {"raw_s": seconds, "raw_tasks": len(tasks), "nodes": len(nodes)}


def report_raw(first: dict[str, Any], raw: dict[str, Any]) -> float:
    raw_rate = rate(raw["raw_tasks"], raw["raw_s"])
    print(f"Dynamic-FI activation on a {raw['nodes']}-node cluster: {first['structures']:,} structures, "
          f"{first['documents']:,} documents, each run under a prefix of its own")
    print(f"  raw _bulk_docs, {raw['nodes']} processes through {raw['nodes']} nodes at once: "
          f"{raw['raw_tasks']:,} tasks in {raw['raw_s']:.1f} s = {raw_rate:,.0f} tasks/s", flush=True)
    return raw_rate


def report_run(m: dict[str, Any], one: float, raw_rate: float) -> None:
    worker = rate(m["tasks"], m["activation_s"])
    efficiency = worker / (m["workers"] * one)
    print(f"  {m['workers']} worker process(es): load {m['load_s']:.0f} s, digest {m['digest_s']:.0f} s, "
          f"activation {m['activation_s']:.1f} s, {m['tasks']:,} tasks ({m['unique']:,} distinct) = "
          f"{worker:,.0f} tasks/s; {worker / raw_rate:.2f} of raw; speed-up {worker / one:.2f}x, "
          f"scaling efficiency {efficiency:.2f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--structures", type=int, default=20_000)
    parser.add_argument("--per-area", type=int, default=500)
    parser.add_argument("--workers", default="1,2,3", help="worker counts to measure, the first being 1")
    add_server_args(parser)
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.workers.split(",") if c.strip()]
    if not counts or counts[0] != 1:
        parser.error("--workers must start with 1 (the baseline)")
    quiet_logs()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the cluster is stopped on the way out

    def run() -> int:
        use_server_args(args)
        first = measure_workers(1, args.structures, args.per_area)
        raw_rate = report_raw(first, measure_raw(first.pop("task_docs")))
        one = rate(first["tasks"], first["activation_s"])
        report_run(first, one, raw_rate)
        for n in counts[1:]:  # each printed as soon as measured
            report_run(measure_workers(n, args.structures, args.per_area), one, raw_rate)
        return 0

    if args.couch_url:
        return run()
    with own_cluster() as url:
        args.couch_url = url
        return run()


if __name__ == "__main__":
    sys.exit(main())
