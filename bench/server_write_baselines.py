"""Benchmark: the server's own ``_bulk_docs`` rate for the same tasks into three kinds of database.

Why: ``bench/workers_activation.py`` compares the plan worker with raw ``_bulk_docs`` into a *fresh, empty*
database. The worker writes into the main database, which already holds the areas' documents and has design
documents whose views the server keeps up to date. This script measures, in one run and in turn, the raw rate
of the same task-shaped documents (``_bulk_docs`` of 500) into:

- a fresh database (the activation benchmark's baseline);
- a database preloaded with generated areas (structures, families, members), no design documents;
- the same, with the main database's design documents (views built while the tasks come in, as on main).

Figures only: never a pass/fail on time.

    .venv/bin/python bench/server_write_baselines.py [--structures 4000] [--rounds 2] [--couch-url URL]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CHUNK, add_server_args, area_size, bench_server, fresh_db, load, quiet_logs, use_server_args
from couch_design.loader import design_docs_for
from demo.synthetic import operational_areas
from workers.couch import Couch, Doc

KINDS = ("fresh", "preloaded", "preloaded + main's design documents")


def tasks(count: int) -> list[Doc]:
    return [{"_id": str(uuid.uuid4()), "type": "Task", "for": f"entity-{i}", "groupIdentifier": f"area-{i // 1700}",
             "planIdentifier": "bench-plan", "status": "Ready", "businessStatus": "Not Visited",
             "code": "RACD Register Family", "executionPeriod": {"start": "2026-11-01T00:00:00Z"},
             "authoredOn": "2026-11-29T00:00:00Z", "owner": "fieldsync", "description": "Register family",
             "focus": "action-1"} for i in range(count)]


def rate(couch: Couch, db: str, docs: list[Doc]) -> float:
    started = time.perf_counter()
    for start in range(0, len(docs), CHUNK):
        couch.bulk_docs(db, [dict(d) for d in docs[start : start + CHUNK]])
    return len(docs) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--structures", type=int, default=4000, help="structures of the preloaded areas")
    parser.add_argument("--tasks", type=int, default=13_700, help="tasks written into each database")
    parser.add_argument("--rounds", type=int, default=2)
    add_server_args(parser)
    args = parser.parse_args(argv)
    use_server_args(args)
    quiet_logs()
    batch = tasks(args.tasks)
    with bench_server() as server:
        couch = server.couch
        print(f"{args.tasks:,} tasks into each database, _bulk_docs of {CHUNK}; preloaded: {args.structures:,} "
              "structures with their families and members")
        for n in range(1, args.rounds + 1):
            for kind in KINDS:
                db = fresh_db(couch, "baseline")
                preloaded = 0
                if kind != "fresh":
                    preloaded = load(couch, db, operational_areas("baseline", area_size(args.structures)))
                if kind.endswith("design documents"):
                    for doc in design_docs_for("main"):
                        couch.put(db, dict(doc))
                print(f"  round {n}  {kind:<38} {rate(couch, db, batch):8,.0f} tasks/s"
                      + (f"  ({preloaded:,} documents there before)" if preloaded else ""), flush=True)
                couch.delete_db(db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
