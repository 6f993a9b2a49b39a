"""Benchmark: the conflict resolver over 10,000 conflicted documents, against a real (embedded) server.

Writes N (default 10,000) Task documents with two conflicting generation-1 leaves each, the way a replicator
writes them (``_bulk_docs`` with ``new_edits: false``; the two leaves differ in ``lastModified`` and status;
for about half of the documents, the revision ids being hashes, the later edit is not the revision CouchDB
shows as winner, so the resolver has to move the later body on top). The same leaves go, in the same run,
into a second, fresh database outside fieldsync's prefix (no worker follows it).

Then:

- **resolver**: the registry's ``conflicts`` worker, ``Runner.run(until_idle=True)`` on the main database
  (and the other databases it follows): change feed, ``_bulk_get`` of the leaves, audit records, the
  ``_bulk_docs`` of the resolution, checkpoints, and reading its own writes back until every feed is idle.
  Resolutions = conflict audit records written.
- **raw floor**, on the copy: per chunk of ``--chunk`` documents (default: the worker's batch size), one
  ``_bulk_get`` of both leaves of every document (the leaf revisions are known, as the change feed's
  ``style=all_docs`` gives them) and one ``_bulk_docs`` writing the later body on top of the current winner and
  deleting the other leaf: the same writes as the resolver, without the feed, the audit or the checkpoints.

Prints resolutions/s, raw documents/s, their ratio (resolver / raw), and checks afterwards that no document of
either database still has ``_conflicts`` and that the conflict audit records number N. Figures only: never a
pass/fail on time (the checks are reported, not asserted).

    .venv/bin/python bench/workers_conflicts.py [--docs 10000] [--chunk 200]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    ServerCpu,
    add_server_args,
    audit_count,
    bench_server,
    count_conflicted,
    fresh_db,
    maxrss_mib,
    quiet_logs,
    rate,
    run_workers,
    use_server_args,
    write_leaves,
)
from workers.couch import Couch, Doc

PLAN = "bench-conflicts-plan"
LATER = "2026-11-21T08:00:00.000Z"
EARLIER = "2026-11-21T07:30:00.000Z"


def doc_id(i: int) -> str:
    return f"bench-task-{i:06d}"


def rev_hash(i: int, leaf: str) -> str:
    return hashlib.md5(f"{doc_id(i)}/{leaf}".encode()).hexdigest()


def leaf_rev(i: int, leaf: str) -> str:
    return f"1-{rev_hash(i, leaf)}"


def conflicted_leaves(count: int) -> Iterator[Doc]:
    """Two generation-1 leaves per Task document: one edited later (Sprayed), one earlier (Not Sprayed)."""
    for i in range(count):
        tid = doc_id(i)
        base: Doc = {"_id": tid, "type": "Task", "identifier": tid, "planIdentifier": PLAN, "code": "IRS",
                     "groupIdentifier": "bench-area", "for": f"bench-structure-{i:06d}", "priority": "routine",
                     "authoredOn": "2026-11-01T00:00:00.000Z", "owner": "bench"}
        # which leaf is later alternates; the winner CouchDB shows (highest rev id, a hash) is the later one
        # about half the time
        a_later = i % 2 == 0
        for leaf, later in (("a", a_later), ("b", not a_later)):
            yield {**base, "_rev": leaf_rev(i, leaf), "_revisions": {"start": 1, "ids": [rev_hash(i, leaf)]},
                   "status": "Completed", "businessStatus": "Sprayed" if later else "Not Sprayed",
                   "lastModified": LATER if later else EARLIER}


def _winning_rev(leaves: list[Doc]) -> str:
    """The revision the server shows as current: the highest generation, then the highest revision id."""
    def key(rev: str) -> tuple[int, str]:
        gen, _, rid = rev.partition("-")
        return int(gen), rid
    return max((str(leaf["_rev"]) for leaf in leaves), key=key)


def raw_pass(couch: Couch, db: str, count: int, chunk: int) -> tuple[float, int, int]:
    """The server's floor: ``_bulk_get`` + ``_bulk_docs`` per chunk. (seconds, documents settled, writes)."""
    settled = writes_done = 0
    started = time.perf_counter()
    for start in range(0, count, chunk):
        refs = [(doc_id(i), leaf_rev(i, leaf)) for i in range(start, min(count, start + chunk)) for leaf in "ab"]
        by_doc: dict[str, list[Doc]] = {}
        for leaf_doc in couch.bulk_get(db, refs):
            by_doc.setdefault(str(leaf_doc["_id"]), []).append(leaf_doc)
        writes: list[Doc] = []
        for leaves in by_doc.values():
            living = [leaf_doc for leaf_doc in leaves if not leaf_doc.get("_deleted")]
            if len(living) < 2:
                continue
            current = _winning_rev(living)
            winner = max(living, key=lambda d: str(d.get("lastModified", "")))
            body = {k: v for k, v in winner.items() if not k.startswith("_") or k == "_id"}
            if winner["_rev"] != current:
                writes.append({**body, "_rev": current})
                writes.append({"_id": winner["_id"], "_rev": winner["_rev"], "_deleted": True})
            for loser in living:
                if loser["_rev"] not in (winner["_rev"], current):
                    writes.append({"_id": loser["_id"], "_rev": loser["_rev"], "_deleted": True})
            settled += 1
        results = couch.bulk_docs(db, writes)
        bad = [r for r in results if r.get("error")]
        if bad:
            raise RuntimeError(f"raw pass: _bulk_docs refused {len(bad)} writes, e.g. {bad[0]}")
        writes_done += len(results)
    return time.perf_counter() - started, settled, writes_done


def later_body_won(couch: Couch, db: str, sample: int) -> int:
    """How many of the first ``sample`` documents show the later edit (Sprayed) now."""
    ids = [doc_id(i) for i in range(sample)]
    docs = couch.get_many(db, ids)
    return sum(1 for d in docs.values() if d.get("businessStatus") == "Sprayed")


def measure(count: int, chunk: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"docs": count}
    with bench_server() as server:
        couch, settings = server.couch, server.settings
        chunk = chunk or settings.batch_size
        out["chunk"] = chunk
        out["batch_size"] = settings.batch_size
        raw_db = fresh_db(couch, "benchraw-conflicts")
        started = time.perf_counter()
        out["leaves_main"] = write_leaves(couch, settings.dbs.main, conflicted_leaves(count))
        out["load_main_s"] = time.perf_counter() - started
        started = time.perf_counter()
        out["leaves_raw"] = write_leaves(couch, raw_db, conflicted_leaves(count))
        out["load_raw_s"] = time.perf_counter() - started
        out["conflicted_before"] = count_conflicted(couch, settings.dbs.main)[1]
        out["conflicted_before_raw"] = count_conflicted(couch, raw_db)[1]

        server_cpu = ServerCpu(settings.couch_url)
        out["raw_s"], out["raw_settled"], out["raw_writes"] = raw_pass(couch, raw_db, count, chunk)
        out["raw_server_cpu_s"] = server_cpu.take()
        cpu = time.process_time()
        out["resolver_s"], stats = run_workers(couch, settings, ["conflicts"])
        out["resolver_cpu_s"] = time.process_time() - cpu
        out["resolver_server_cpu_s"] = server_cpu.take()
        out["resolver_changes"] = stats.changes
        out["resolver_writes"] = stats.writes
        out["resolver_batches"] = stats.batches
        out["parked"] = stats.parked
        out["rss_mib"] = maxrss_mib()

        out["audited"] = audit_count(couch, settings, "conflict")
        out["docs_main"], out["conflicted_after"] = count_conflicted(couch, settings.dbs.main)
        out["docs_raw"], out["conflicted_after_raw"] = count_conflicted(couch, raw_db)
        sample = min(count, 1000)
        out["sample"] = sample
        out["later_won_main"] = later_body_won(couch, settings.dbs.main, sample)
        out["later_won_raw"] = later_body_won(couch, raw_db, sample)
    return out


def report(m: dict[str, Any]) -> None:
    n = m["docs"]
    print(f"Conflict resolver: {n:,} Task documents with 2 conflicting leaves each "
          f"(written with _bulk_docs new_edits=false, {m['leaves_main']:,} leaves)")
    print(f"  load             {m['load_main_s']:8.1f} s main db, {m['load_raw_s']:.1f} s raw copy "
          f"({m['conflicted_before']:,} / {m['conflicted_before_raw']:,} documents conflicted)")
    resolver = rate(m["audited"], m["resolver_s"])
    print(f"  resolver         {m['resolver_s']:8.1f} s  {m['audited']:,} resolutions audited, "
          f"{m['resolver_writes']:,} writes, {m['resolver_changes']:,} changes read in {m['resolver_batches']:,} "
          f"batches of <= {m['batch_size']}, {m['parked']} parked  {resolver:8,.0f} resolutions/s")
    raw = rate(m["raw_settled"], m["raw_s"])
    print(f"  raw pass         {m['raw_s']:8.1f} s  {m['raw_settled']:,} documents settled, {m['raw_writes']:,} "
          f"writes (_bulk_get + _bulk_docs per {m['chunk']} documents, fresh db)  {raw:8,.0f} docs/s")
    print(f"  ratio            {resolver / raw:8.2f}  (resolver resolutions/s / raw _bulk_get+_bulk_docs docs/s)")
    server = ""
    if m.get("resolver_server_cpu_s") is not None:
        server = (f"; the server's own CPU (its processes, from /proc): {m['resolver_server_cpu_s']:.1f} s during the "
                  f"resolver, {m['raw_server_cpu_s']:.1f} s during the raw pass")
    print(f"  CPU              {m['resolver_cpu_s']:8.1f} s  in this process during the resolver{server}")
    print(f"  check            main: {m['conflicted_after']:,} of {m['docs_main']:,} documents still conflicted, "
          f"{m['audited']:,} conflict audit records (expected {n:,}): "
          f"{'ok' if m['conflicted_after'] == 0 and m['audited'] == n else 'NOT OK'}")
    print(f"                   raw copy: {m['conflicted_after_raw']:,} of {m['docs_raw']:,} still conflicted; "
          f"later edit won in {m['later_won_main']:,} / {m['later_won_raw']:,} of the first {m['sample']:,} "
          f"(main / raw)")
    print(f"  peak RSS         {m['rss_mib']:8.1f} MiB (this process: load, raw pass and resolver)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=10_000, help="conflicted documents (default 10,000)")
    parser.add_argument("--chunk", type=int, default=None,
                        help="documents per raw _bulk_get/_bulk_docs (default: FIELDSYNC_BATCH_SIZE, 200)")
    add_server_args(parser)
    args = parser.parse_args(argv)
    use_server_args(args)
    quiet_logs()
    report(measure(args.docs, args.chunk))
    return 0


if __name__ == "__main__":
    sys.exit(main())
