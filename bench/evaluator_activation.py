"""Benchmark: the Dynamic-FI plan's activation over generated data, fast path vs plain compiled fhirpathpy.

Generates N structures (default 10,000) in 20 operational areas, one family per structure on average (some
structures have none, some two), four members per family (ages 0-80), then runs the activation twice in the
same process: with the evaluator's fast path, and with fhirpathpy (each expression compiled once, with the
compatibility layer that makes it answer as OpenSRP does). Prints entities/s, condition evaluations/s and
peak memory of each, and the ratio. Exits 1 if the two runs decide differently on any entity (every
condition decision is compared, and the tasks). Figures only: never a pass/fail on time.

    .venv/bin/python bench/evaluator_activation.py [--structures N] [--seed S] [--couch-url URL (unused)]
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import tracemalloc
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validators.opensrp import Plan
from workers.evaluator.engine import activation_batches
from workers.evaluator.fhirpath import PathEngine, compile_expression
from workers.evaluator.lookup import InMemoryLookup
from workers.evaluator.templates import new_plan_from_template

Doc = dict[str, Any]
NOW = datetime(2021, 11, 10, 8, 0, tzinfo=UTC)
AREAS = 20
KINDS = ["Residential Structure"] * 16 + ["Larval Breeding Site", "Mosquito Collection Point", None, "School"]


def generate(structures: int, seed: int) -> tuple[Doc, list[Doc], int]:
    rng = random.Random(seed)
    docs: list[Doc] = []
    district = "district-bench"
    docs.append({"type": "Feature", "id": district, "jurisdiction": True,
                 "properties": {"name": "District", "status": "Active", "geographicLevel": 2}})
    areas = [f"oa-{i:02d}" for i in range(AREAS)]
    for area in areas:
        docs.append({"type": "Feature", "id": area, "jurisdiction": True,
                     "properties": {"name": area, "parentId": district, "status": "Active", "geographicLevel": 3}})
    residential: list[str] = []
    for i in range(structures):
        sid = f"s-{i:06d}"
        kind = rng.choice(KINDS)
        props: Doc = {"parentId": areas[i % AREAS], "status": "Active", "geographicLevel": 5, "version": 0}
        if kind is not None:
            props["type"] = kind
        docs.append({"type": "Feature", "id": sid, "properties": props,
                     "geometry": {"type": "Point", "coordinates": [100 + rng.random(), 13 + rng.random()]}})
        if kind in ("Residential Structure", None):
            residential.append(sid)
    families = structures  # as many families as structures: most homes one, some two, some none
    homes = [residential[i % len(residential)] if i % 5 else rng.choice(residential) for i in range(families)]
    members = 0
    for f in range(families):
        fid = f"f-{f:06d}"
        home = homes[f]
        docs.append({"type": "Client", "baseEntityId": fid, "firstName": f"House{f}", "lastName": "Family",
                     "birthdate": "1970-01-01T00:00:00.000+07:00", "gender": "Male",
                     "attributes": {"residence": home}, "relationships": {}})
        for m in range(4):
            age_days = rng.randint(0, 80 * 365)
            born = date.fromordinal(NOW.date().toordinal() - age_days)
            docs.append({"type": "Client", "baseEntityId": f"m-{f:06d}-{m}", "firstName": f"P{m}",
                         "lastName": f"House{f}", "birthdate": born.isoformat() + "T00:00:00.000+07:00",
                         "gender": rng.choice(["Male", "Female"]),
                         "attributes": {"residence": home}, "relationships": {"family": [fid]}})
            members += 1
    plan = new_plan_from_template("Dynamic-FI", district, "Bench", date(2021, 11, 1), date(2021, 11, 30), NOW)
    plan["status"] = "active"
    docs.append(plan)
    entities = 1 + AREAS + structures + families + members
    return plan, docs, entities


def _activate(plan: Doc, lookup: InMemoryLookup, mode: str, decisions: list[tuple[str, str, bool]] | None,
              ) -> tuple[PathEngine, int, list[tuple[str, str, str]]]:
    engine = PathEngine(mode, timed=decisions is not None)  # type: ignore[arg-type]
    tasks: list[tuple[str, str, str]] = []
    entities = 0
    for batch in activation_batches(plan, lookup, NOW, batch_size=1000, paths=engine, record=decisions):
        entities += batch.entities
        tasks.extend((t["_id"], t["code"], t["for"]) for t in batch.tasks)
    return engine, entities, tasks


def run(plan: Doc, lookup: InMemoryLookup, mode: str) -> dict[str, Any]:
    """A timed run (recording every condition decision), then a second run under tracemalloc for the peak
    memory the activation allocates (tracemalloc slows allocation down, so it is kept out of the timing)."""
    decisions: list[tuple[str, str, bool]] = []
    started = time.perf_counter()
    engine, entities, tasks = _activate(plan, lookup, mode, decisions)
    elapsed = time.perf_counter() - started
    tracemalloc.start()
    _activate(plan, lookup, mode, None)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"mode": mode, "seconds": elapsed, "entities": entities, "evaluations": engine.evaluations,
            "path_seconds": engine.seconds, "fallbacks": engine.fallbacks, "peak": peak,
            "decisions": decisions, "tasks": sorted(tasks)}


def report(result: dict[str, Any]) -> None:
    seconds = result["seconds"]
    print(f"  {result['mode']:<11} {seconds:8.2f} s  {result['entities'] / seconds:10,.0f} entities/s  "
          f"{result['evaluations'] / result['path_seconds']:10,.0f} condition evaluations/s "
          f"({result['path_seconds']:.2f} s in FHIRPath)  peak {result['peak'] / 2**20:6.1f} MiB  "
          f"[{result['evaluations']:,} evaluations, {len(result['tasks']):,} tasks, "
          f"{result['fallbacks']} fallbacks]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--structures", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--couch-url", metavar="URL", default=None,
                        help="accepted like every benchmark's, unused: this one measures the evaluator alone, in "
                        "memory, with no server")
    args = parser.parse_args(argv)
    print("server: none (the evaluator alone, in memory: the same figures on every server)")
    plan, docs, entities = generate(args.structures, args.seed)
    lookup = InMemoryLookup(docs)
    del docs
    gc.collect()
    gc.freeze()  # the generated input is long-lived: keep it out of the collector's generations (both runs)
    for _, _, expression in Plan.model_validate(plan).expressions():
        compile_expression(expression)  # compiled once, before either run is timed
    print(f"Dynamic-FI activation: {args.structures:,} structures, {args.structures:,} families, "
          f"{4 * args.structures:,} members, {AREAS} operational areas ({entities:,} entities)")
    fast = run(plan, lookup, "fast")
    report(fast)
    slow = run(plan, lookup, "fhirpathpy")
    report(slow)
    ratio = slow["seconds"] / fast["seconds"]
    path_ratio = slow["path_seconds"] / fast["path_seconds"]
    print(f"  ratio       {ratio:8.1f} x entities/s (whole activation: walk, conversions, tasks)")
    print(f"              {path_ratio:8.1f} x condition evaluations/s "
          "(FHIRPath: fast path vs compiled fhirpathpy)")
    same_decisions = fast["decisions"] == slow["decisions"]
    same_tasks = fast["tasks"] == slow["tasks"]
    print(f"  decisions   {'identical' if same_decisions else 'DIFFERENT'} on {len(fast['decisions']):,} "
          f"condition evaluations; tasks {'identical' if same_tasks else 'DIFFERENT'}")
    if not (same_decisions and same_tasks):
        for a, b in zip(fast["decisions"], slow["decisions"], strict=False):
            if a != b:
                print(f"  first difference: fast {a} vs fhirpathpy {b}")
                break
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
