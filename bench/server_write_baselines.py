"""Benchmark: the server's own ``_bulk_docs`` rate for the same tasks into three kinds of database.

Why: ``bench/workers_activation.py`` compares the plan worker with raw ``_bulk_docs`` into a *fresh, empty*
database. The worker writes into the main database, which already holds the areas' documents and has design
documents whose views the server keeps up to date. This script measures, in one run and in turn, the raw rate
of the same task-shaped documents (``_bulk_docs`` of 500) into:

- a fresh database (the activation benchmark's baseline);
- a database preloaded with generated areas (structures, families, members), no design documents;
- the same, with the main database's design documents (views built while the tasks come in, as on main);
- preloaded, two requests at a time (the plan worker keeps two writes in flight: ``activation.PIPELINE``);
- the same, while a follower reads the database's feed (longpoll, without documents, as the plan worker's
  follower reads main's feed during an activation);

and, after the fresh database's pass, the cost of reading its feed back from the start (pages of 2,000 without
documents, as a follower catches up with a database's writes): on PouchDB Server, whose LevelDB adapter reads
every change's document even then, that is close to half the cost of the writes (session 18).

Each line also gives the server's own CPU per task (its processes, from ``/proc``, where it runs here): together
they take the activation's gap to the fresh baseline apart into what the server does differently for the
worker's writes (session 13).

Figures only: never a pass/fail on time.

    .venv/bin/python bench/server_write_baselines.py [--structures 4000] [--rounds 2] [--couch-url URL]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    CHUNK,
    ServerCpu,
    add_server_args,
    area_size,
    bench_server,
    fresh_db,
    load,
    quiet_logs,
    settle_background,
    use_server_args,
)
from couch_design.loader import design_docs_for
from demo.synthetic import operational_areas
from workers.couch import Couch, Doc


@dataclass(frozen=True)
class Kind:
    name: str
    preloaded: bool = False
    design: bool = False
    writers: int = 1  # _bulk_docs requests at the server at once
    follower: bool = False  # a longpoll reader of the feed meanwhile


KINDS = (Kind("fresh"), Kind("preloaded", preloaded=True),
         Kind("preloaded + main's design documents", preloaded=True, design=True),
         Kind("preloaded, 2 requests at a time", preloaded=True, writers=2),
         Kind("preloaded, 2 at a time + a feed reader", preloaded=True, writers=2, follower=True))


def tasks(count: int) -> list[Doc]:
    return [{"_id": str(uuid.uuid4()), "type": "Task", "for": f"entity-{i}", "groupIdentifier": f"area-{i // 1700}",
             "planIdentifier": "bench-plan", "status": "Ready", "businessStatus": "Not Visited",
             "code": "RACD Register Family", "executionPeriod": {"start": "2026-11-01T00:00:00Z"},
             "authoredOn": "2026-11-29T00:00:00Z", "owner": "fieldsync", "description": "Register family",
             "focus": "action-1"} for i in range(count)]


def rate(couch: Couch, db: str, docs: list[Doc], writers: int = 1) -> float:
    parts = [[dict(d) for d in docs[start : start + CHUNK]] for start in range(0, len(docs), CHUNK)]
    started = time.perf_counter()
    if writers == 1:
        for part in parts:
            couch.bulk_docs(db, part)
    else:
        local = threading.local()

        def write(part: list[Doc]) -> None:
            if not hasattr(local, "couch"):
                local.couch = couch.clone()
            local.couch.bulk_docs(db, part)

        with ThreadPoolExecutor(writers) as pool:
            list(pool.map(write, parts))
    return len(docs) / (time.perf_counter() - started)


def read_back(couch: Couch, db: str) -> tuple[int, float]:
    """The whole feed of ``db`` from the start, in pages of 2,000 without documents: (changes, seconds)."""
    started, since, read = time.perf_counter(), 0, 0
    while True:
        page = couch.changes(db, since, limit=2000, include_docs=False)
        if not page.results:
            return read, time.perf_counter() - started
        read, since = read + len(page.results), page.last_seq


class FeedReader:
    """A reader of ``db``'s feed from now on, on a thread of its own, until :meth:`stop`: as the plan worker's
    follower reads it (a page at once while it is behind, else a longpoll for the next change)."""

    def __init__(self, couch: Couch, db: str) -> None:
        self.couch, self.db, self.rows, self.requests = couch.clone(), db, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed-reader", daemon=True)
        self._since = couch.changes(db, "now", limit=1, include_docs=False).last_seq
        self._thread.start()

    def _run(self) -> None:
        behind = False  # the last page was full: read on at once; else wait for the next change (longpoll)
        while not self._stop.is_set():
            page = self.couch.changes(self.db, self._since, limit=2000, include_docs=False, style="all_docs",
                                      longpoll=None if behind else 1.0)
            self._since, self.rows, self.requests = page.last_seq, self.rows + len(page.results), self.requests + 1
            behind = len(page.results) >= 2000

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


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
                if kind.preloaded:
                    preloaded = load(couch, db, operational_areas("baseline", area_size(args.structures)))
                if kind.design:
                    for doc in design_docs_for("main"):
                        couch.put(db, dict(doc))
                if preloaded:
                    # the server's indexing and compaction of the load end first, as the activation benchmark
                    # has them end before the activation (they would otherwise take the pass's server time)
                    settle_background(couch, views_of=db)
                reader = FeedReader(couch, db) if kind.follower else None
                cpu = ServerCpu(server.settings.couch_url)
                tasks_s = rate(couch, db, batch, kind.writers)  # each kind writes into a database of its own
                spent = cpu.take()
                if reader is not None:
                    reader.stop()
                print(f"  round {n}  {kind.name:<40} {tasks_s:8,.0f} tasks/s"
                      + (f"  server CPU {spent * 1e6 / len(batch):4.0f} us/task" if spent is not None else "")
                      + (f"  ({preloaded:,} documents there before)" if preloaded else "")
                      + (f"  (the reader: {reader.requests} requests, {reader.rows:,} rows)" if reader else ""),
                      flush=True)
                if kind == KINDS[0]:
                    cpu.take()
                    changes, seconds = read_back(couch, db)
                    spent = cpu.take()
                    print(f"  round {n}  {'its feed read back, pages of 2,000':<40} {changes / seconds:8,.0f} changes/s"
                          + (f"  server CPU {spent * 1e6 / changes:4.0f} us/change" if spent is not None else ""),
                          flush=True)
                couch.delete_db(db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
