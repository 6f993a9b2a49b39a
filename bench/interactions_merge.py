"""Benchmark: one task-interaction merge pass (``summarizer.job.run_pass``, what ``fieldsync summarize`` runs)
over 1,000 users x 2 devices x 250 events of one day, against a real (embedded) server of its own.

Set-up (timed and printed apart, not part of any rate): ``--users`` users (default 1,000) are created with
``workers.provision.add_user`` in the role ``chw``, which the ``settings`` document's
``permissions.can_track_task_interactions`` lists; then each user's records are written as admin with one
``_bulk_docs`` into their meta database. Per device and day the records have the CHT interaction-log shape
(sessions of ``{action, timestamp, ref?, detail?}`` events, ``metadata {user, deviceId, date, version}``):
``--events`` events (default 250) in sessions of 50, split into ``--docs-per-device`` documents (default 3):
the daily document, a ``-conflicted-<ms>`` copy (``metadata.conflicted``) and ``-part-<n>`` batches (the last
ones on an upgraded app version), consecutive documents sharing ``--overlap`` events (default 10), so the
merge has duplicates to fold. Every record passes ``validators.interaction``.

Measured, in the same run and on the same records:

- raw: the server's own read rate: ``_changes?include_docs=true`` (from 0, one page) over every meta
  database, records/s (interaction records counted; each database's design document comes along);
- merge: one full pass, records (source documents) merged/s and source events/s, documents written,
  records removed, the pass's peak RSS (``ru_maxrss``; ``--trace`` adds the tracemalloc peak, which slows the
  pass down, so the ratio of a traced run is not representative);
- ratio = merged records/s / raw records/s (the issue's target is >= 0.5);
- where the time goes: the pass's CPU time in this process, and the requests of the raw read and of the pass
  by endpoint (count, seconds), through a counting :class:`~workers.couch.Couch`;
- checks (exit 1 if wrong, never on time): ``fieldsync-users-meta`` holds one daily document per user and
  device, each user's kept events are min(2 x events, cap) and those refused ``droppedByCap``, no record is
  parked, every meta database is left without records. 2 x 250 = 500 is exactly the default cap: run
  ``--events 300`` to make the cap refuse 100 events per user.

``--memory`` runs the pass at ``--sizes`` users (default 250,1000), each in a subprocess with its own server
and tracemalloc on, and prints each peak: bounded memory means the peaks do not grow with the users.
``--profile`` runs the pass under cProfile and prints where its time goes. Figures only: no pass/fail on time.

    .venv/bin/python bench/interactions_merge.py [--users 1000] [--events 250] [--docs-per-device 3]
    .venv/bin/python bench/interactions_merge.py --memory [--sizes 250,1000]
    .venv/bin/python bench/interactions_merge.py --users 250 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import subprocess
import sys
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    ServerCpu,
    add_server_args,
    bench_server,
    maxrss_mib,
    quiet_logs,
    rate,
    scratch,
    server_args,
    use_server_args,
)
from summarizer import job
from validators.interaction import daily_doc_id, validate_record
from workers import provision
from workers.couch import Couch, Doc
from workers.settings import Settings

DAY = "2026-11-23"
T0 = int(datetime(2026, 11, 23, 6, 0, tzinfo=UTC).timestamp() * 1000)  # 06:00 UTC of DAY
ROLE = "chw"
DEVICES = ("phone", "tablet")
SESSION_EVENTS = 50
PREFIX = "interaction-"
TASKS = ("task.malaria.followup", "task.anc.visit", "task.pnc.home_visit", "task.immunization.due")
FORMS = ("malaria_followup", "anc_visit", "pnc_home_visit", "immunization_visit")
# the middle of a task-list session: open a task, fill its form, complete it; scroll, filter, open groups
ATTEMPT = ("task:open", "task:form_open", "task:form_save", "task:complete", "task_list:scroll",
           "task_filter:open", "task_filter:select", "task_filter:close", "task_group:show", "task_group:select",
           "task:open", "task:back", "task_group:leave")


def _endpoint(path: tuple[str, ...]) -> str:
    if not path or not path[0]:
        return "/"
    for part in path if path[0].startswith("_") and len(path) == 1 else path[1:]:
        if part.startswith("_design/"):
            return "_view"
        if part.startswith("_local/"):
            return "_local"
        if part.startswith("_"):
            return part
    return "{db}" if len(path) == 1 else "{doc}"


class CountingCouch(Couch):
    """The admin's :class:`Couch`, counting requests and their wall time by endpoint (``GET _all_docs``...)."""

    def __init__(self, couch: Couch) -> None:
        super().__init__(couch.url, couch.credentials, timeout=couch.timeout, retries=couch.retries,
                         backoff=couch.backoff)
        self.calls: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])

    def request(self, method: str, *path: str, body: Any = None, params: dict[str, Any] | None = None,
                timeout: float | None = None, retries: int | None = None) -> Any:
        started = time.perf_counter()
        try:
            return super().request(method, *path, body=body, params=params, timeout=timeout, retries=retries)
        finally:
            entry = self.calls[f"{method} {_endpoint(path)}"]
            entry[0] += 1
            entry[1] += time.perf_counter() - started

    def take(self) -> dict[str, list[float]]:
        calls, self.calls = dict(self.calls), defaultdict(lambda: [0, 0.0])
        return calls


def user_name(i: int) -> str:
    return scratch(f"chw{i:05d}")


def _event(action: str, ts: int, n: int) -> Doc:
    event: Doc = {"action": action, "timestamp": ts}
    if action in ("task:open", "task:complete", "task:back"):
        event["ref"] = TASKS[n % len(TASKS)]
    elif action in ("task:form_open", "task:form_save"):
        event["ref"] = FORMS[n % len(FORMS)]
    elif action in ("task_list:scroll", "task_filter:select", "task_group:select"):
        event["detail"] = str(n % 23)
    return event


def device_events(u: int, d: int, events: int) -> list[tuple[int, Doc]]:
    """One device's day: ``events`` events as (session index, event), sessions of 50 an hour apart."""
    out: list[tuple[int, Doc]] = []
    for i in range(events):
        s, k = divmod(i, SESSION_EVENTS)
        started = T0 + s * 3_600_000 + d * 1_800_000 + u * 37
        last = min(SESSION_EVENTS, events - s * SESSION_EVENTS) - 1
        if k == 0:
            action = "task_list:open"
        elif k == 1:
            action = "task_list:loaded"
        elif k == last:
            action = "task_list:leave"
        else:
            action = ATTEMPT[(k - 2) % len(ATTEMPT)]
        out.append((s, _event(action, started + 250 + k * 6_100 + (u + k) % 7, u + i)))
    return out


def _sessions(u: int, d: int, part: list[tuple[int, Doc]]) -> list[Doc]:
    by: dict[int, list[Doc]] = defaultdict(list)
    for s, event in part:
        by[s].append(event)
    return [{"session": "tasks", "startedAt": T0 + s * 3_600_000 + d * 1_800_000 + u * 37, "events": evs}
            for s, evs in sorted(by.items())]


def user_records(u: int, events: int, parts: int, overlap: int) -> list[Doc]:
    """One user's records of DAY: per device the daily document, a conflicted copy, partial batches."""
    user = user_name(u)
    docs: list[Doc] = []
    for d, device in enumerate(DEVICES):
        stream = device_events(u, d, events)
        bounds = [round(i * len(stream) / parts) for i in range(parts + 1)]
        for p in range(parts):
            part = stream[max(0, bounds[p] - overlap) : bounds[p + 1]]
            if not part:
                continue
            metadata: Doc = {"user": user, "deviceId": device, "date": DAY,
                             "version": "5.2.0" if p < parts - 1 or parts < 3 else "5.2.1"}
            doc_id = daily_doc_id(user, device, DAY)
            if p == 1:
                doc_id += f"-conflicted-{T0 + 9 * 3_600_000 + u}"
                metadata["conflicted"] = True
            elif p > 1:
                doc_id += f"-part-{p}"
            docs.append({"_id": doc_id, "type": "interaction-log", "sessions": _sessions(u, d, part),
                         "metadata": metadata})
    return docs


def _events_in(doc: Doc) -> int:
    return sum(len(s["events"]) for s in doc["sessions"])


def _permit(couch: Couch, settings: Settings) -> None:
    doc = couch.get(settings.dbs.main, "settings") or {}
    doc.setdefault("permissions", {})[job.PERMISSION] = [ROLE]
    couch.put(settings.dbs.main, doc)


def setup(couch: Couch, settings: Settings, args: argparse.Namespace, out: dict[str, Any]) -> None:
    _permit(couch, settings)
    started = time.perf_counter()
    for u in range(args.users):
        provision.add_user(couch, settings, user_name(u), f"pw-{u}-bench", [ROLE])
    out["users_s"] = time.perf_counter() - started
    started = time.perf_counter()
    records = events = 0
    for u in range(args.users):
        docs = user_records(u, args.events, args.docs_per_device, args.overlap)
        if u == 0:  # the shape is the contract's: check one user's records with the validator
            for doc in docs:
                validate_record(doc, expected_user=user_name(u))
        results = couch.bulk_docs(settings.dbs.user_meta(user_name(u)), docs)
        bad = [r for r in results if r.get("error")]
        if bad:
            raise RuntimeError(f"_bulk_docs refused {len(bad)} records, e.g. {bad[0]}")
        records += len(docs)
        events += sum(_events_in(d) for d in docs)
    out["write_s"] = time.perf_counter() - started
    out["records_written"], out["events_written"] = records, events


def meta_dbs(couch: Couch, settings: Settings) -> list[str]:
    return sorted(db for db in couch.all_dbs() if settings.dbs.user_of_meta(db) is not None)


def raw_changes(couch: Couch, settings: Settings) -> tuple[float, int, int]:
    """Seconds to read every meta database's ``_changes?include_docs=true``; (seconds, records, events)."""
    records = events = 0
    started = time.perf_counter()
    for db in meta_dbs(couch, settings):
        since: Any = 0
        while True:
            page = couch.changes(db, since, limit=10_000, include_docs=True)
            for change in page.results:
                doc = change.get("doc") or {}
                if str(change.get("id", "")).startswith(PREFIX) and not doc.get("_deleted"):
                    records += 1
                    events += _events_in(doc)
            if not page.results or not page.pending:
                break
            since = page.last_seq
    return time.perf_counter() - started, records, events


def _daily_pages(couch: Couch, db: str, page: int = 200) -> Iterator[Doc]:
    start = PREFIX
    skip = 0
    while True:
        rows = couch.all_docs(db, include_docs=True, startkey=start, endkey=PREFIX + "\ufff0", limit=page,
                              skip=skip)
        for row in rows:
            if row.get("doc"):
                yield row["doc"]
        if len(rows) < page:
            return
        start, skip = rows[-1]["id"], 1


def check(couch: Couch, settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """The pass's result, read back page by page: one document per user and device, the cap, nothing left."""
    cap = settings.interaction_cap
    per_user = 2 * args.events
    kept: dict[str, int] = defaultdict(int)
    dropped: dict[str, int] = defaultdict(int)
    devices: dict[str, set[str]] = defaultdict(set)
    problems: list[str] = []
    daily = 0
    for doc in _daily_pages(couch, settings.dbs.users_meta):
        daily += 1
        user, device = doc["metadata"]["user"], doc["metadata"]["deviceId"]
        devices[user].add(device)
        n = _events_in(doc)
        if doc["summary"]["events"] != n:
            problems.append(f"{doc['_id']}: summary.events {doc['summary']['events']} != {n} kept")
        kept[user] += n
        dropped[user] += int(doc["summary"]["droppedByCap"])
    for u in range(args.users):
        user = user_name(u)
        if devices[user] != set(DEVICES):
            problems.append(f"{user}: daily documents of devices {sorted(devices[user])}")
        if kept[user] != min(cap, per_user) or dropped[user] != max(0, per_user - cap):
            problems.append(f"{user}: kept {kept[user]}, dropped {dropped[user]}")
    left = 0
    for db in meta_dbs(couch, settings):
        left += len(couch.all_docs(db, include_docs=False, startkey=PREFIX, endkey=PREFIX + "\ufff0"))
    if left:
        problems.append(f"{left} records left in the meta databases")
    return {"daily_docs": daily, "expected_daily_docs": args.users * len(DEVICES),
            "kept_events": sum(kept.values()), "dropped_events": sum(dropped.values()),
            "max_kept_per_user": max(kept.values(), default=0), "records_left": left, "problems": problems}


def measure(args: argparse.Namespace, *, raw: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"users": args.users, "events": args.events, "docs_per_device": args.docs_per_device}
    with bench_server(timeout=300.0) as server:
        couch, settings = server.couch, server.settings
        out["cap"] = settings.interaction_cap
        setup(couch, settings, args, out)
        counting = CountingCouch(couch)
        server_cpu = ServerCpu(settings.couch_url)
        if raw:
            server_cpu.take()
            out["raw_s"], out["raw_records"], out["raw_events"] = raw_changes(counting, settings)
            out["raw_requests"] = counting.take()
            out["raw_server_cpu_s"] = server_cpu.take()
        out["rss_before_pass_mib"] = maxrss_mib()
        profiler = cProfile.Profile() if args.profile else None
        if args.trace:
            tracemalloc.start()
        if profiler:
            profiler.enable()
        server_cpu.take()
        started, cpu = time.perf_counter(), time.process_time()
        report = job.run_pass(counting, settings, full=True)
        out["pass_s"] = time.perf_counter() - started
        out["pass_cpu_s"] = time.process_time() - cpu
        out["pass_server_cpu_s"] = server_cpu.take()
        out["pass_requests"] = counting.take()
        if profiler:
            profiler.disable()
        if args.trace:
            out["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        out["rss_after_pass_mib"] = maxrss_mib()
        out.update(records=report.records, merged_users=report.users, documents_written=report.documents_written,
                   removed=report.removed, parked=report.parked, not_permitted=report.not_permitted)
        out["check"] = check(couch, settings, args)
        if report.parked or report.not_permitted or report.records != out["records_written"]:
            out["check"]["problems"].append(f"{report.records} records read of {out['records_written']}, "
                                            f"{report.parked} parked, {report.not_permitted} not permitted")
        if profiler:
            text = io.StringIO()
            stats = pstats.Stats(profiler, stream=text)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(35)
            out["profile"] = text.getvalue()
    return out


def report(m: dict[str, Any]) -> None:
    c = m["check"]
    print(f"Task-interaction merge pass: {m['users']:,} users x {len(DEVICES)} devices x {m['events']} events of "
          f"{DAY}, {m['docs_per_device']} records per device (daily, conflicted copy, partial batches), "
          f"cap {m['cap']}")
    print(f"  set-up: users      {m['users_s']:8.1f} s  {m['users']:,} add_user "
          f"({rate(m['users'], m['users_s']):,.1f} users/s)")
    print(f"  set-up: records    {m['write_s']:8.1f} s  {m['records_written']:,} records, "
          f"{m['events_written']:,} events (one _bulk_docs per user, as admin)")
    merged = rate(m["records"], m["pass_s"])
    if "raw_s" in m:
        raw = rate(m["raw_records"], m["raw_s"])
        print(f"  raw _changes       {m['raw_s']:8.1f} s  {m['raw_records']:,} records, {m['raw_events']:,} events "
              f"(include_docs, every meta db)  {raw:8,.0f} records/s  "
              f"{rate(m['raw_events'], m['raw_s']):9,.0f} events/s")
    print(f"  merge pass         {m['pass_s']:8.1f} s  {m['records']:,} records of {m['merged_users']:,} users  "
          f"{merged:8,.0f} records/s  {rate(m['events_written'], m['pass_s']):9,.0f} events/s "
          f"(source events; {rate(c['kept_events'], m['pass_s']):,.0f} kept events/s)")
    print(f"    written {m['documents_written']:,} daily documents, removed {m['removed']:,} records, "
          f"parked {m['parked']}, not permitted {m['not_permitted']}")
    if "raw_s" in m:
        ratio = merged / rate(m["raw_records"], m["raw_s"])
        print(f"  ratio              {ratio:8.2f}  (merged records/s / raw _changes records/s; target >= 0.5)")
    print(f"  peak RSS           {m['rss_after_pass_mib']:8.1f} MiB (before the pass {m['rss_before_pass_mib']:.1f})")
    if "tracemalloc_peak_mib" in m:
        print(f"  tracemalloc peak   {m['tracemalloc_peak_mib']:8.1f} MiB during the pass")
    print(f"  where the pass's time goes: {m['pass_cpu_s']:.1f} s CPU in this process (parse, merge, JSON, HTTP "
          f"client), the rest waiting for the server")
    if m.get("pass_server_cpu_s") is not None:
        raw_cpu = f", the raw read {m['raw_server_cpu_s']:.1f} s" if m.get("raw_server_cpu_s") is not None else ""
        print(f"    the server's own CPU (its processes, from /proc): the pass {m['pass_server_cpu_s']:.1f} s{raw_cpu}")
    for name in ("raw_requests", "pass_requests"):
        if name in m:
            calls = m[name]
            total_n, total_s = sum(n for n, _ in calls.values()), sum(t for _, t in calls.values())
            print(f"    {name.split('_')[0]:>4}: {total_n:,} requests ({total_n / m['users']:.1f} per user), "
                  f"{total_s:.1f} s in them")
            for key, (n, t) in sorted(calls.items(), key=lambda kv: -kv[1][1]):
                print(f"          {key:<22} {n:>7,.0f}  {t:7.1f} s  {1000 * t / n:6.2f} ms each")
    verdict = "ok" if not c["problems"] else f"WRONG ({len(c['problems'])} problems)"
    print(f"  check              {verdict}: {c['daily_docs']:,} daily documents (expected "
          f"{c['expected_daily_docs']:,}), {c['kept_events']:,} events kept, {c['dropped_events']:,} dropped by "
          f"the cap, at most {c['max_kept_per_user']} per user, {c['records_left']} records left in meta dbs")
    for problem in c["problems"][:10]:
        print(f"    {problem}")
    if "profile" in m:
        print(m["profile"])


def memory(args: argparse.Namespace) -> int:
    results = []
    for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
        cmd = [sys.executable, __file__, "--users", str(n), "--events", str(args.events), "--docs-per-device",
               str(args.docs_per_device), "--overlap", str(args.overlap), "--child", "--trace",
               *server_args()]
        print(f"  running {n:,} users in a subprocess ...", flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return done.returncode
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print("Peak memory of the merge pass (own process and server per size, tracemalloc on):")
    for m in results:
        print(f"  {m['users']:>6,} users  {m['records']:>7,} records  pass {m['pass_s']:6.1f} s  "
              f"peak RSS {m['rss_after_pass_mib']:6.1f} MiB (before the pass {m['rss_before_pass_mib']:.1f})  "
              f"tracemalloc peak {m['tracemalloc_peak_mib']:6.2f} MiB  check "
              f"{'ok' if not m['check']['problems'] else 'WRONG'}")
    if len(results) >= 2:
        a, b = results[0], results[-1]
        rss = b["rss_after_pass_mib"] / a["rss_after_pass_mib"]
        traced = b["tracemalloc_peak_mib"] / a["tracemalloc_peak_mib"]
        print(f"  growth: {b['users'] / a['users']:.1f}x users -> {rss:.2f}x peak RSS, {traced:.2f}x tracemalloc peak")
    return 0 if all(not m["check"]["problems"] for m in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--events", type=int, default=250, help="events per device and day")
    parser.add_argument("--docs-per-device", type=int, default=3, help="daily doc, conflicted copy, part batches")
    parser.add_argument("--overlap", type=int, default=10, help="events shared by consecutive records")
    parser.add_argument("--trace", action="store_true", help="tracemalloc peak during the pass (slower pass)")
    parser.add_argument("--profile", action="store_true", help="cProfile the pass, print the top functions")
    parser.add_argument("--memory", action="store_true", help="peak memory at --sizes users, one subprocess each")
    parser.add_argument("--sizes", default="250,1000")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    add_server_args(parser)
    args = parser.parse_args(argv)
    use_server_args(args)
    if args.users < 1 or args.events < 1 or args.docs_per_device < 1 or args.overlap < 0:
        parser.error("--users, --events and --docs-per-device are at least 1, --overlap at least 0")
    quiet_logs()
    if args.memory:
        return memory(args)
    if args.child:
        print(json.dumps({k: v for k, v in measure(args, raw=False).items() if k != "profile"}))
        return 0
    m = measure(args, raw=True)
    report(m)
    return 0 if not m["check"]["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
