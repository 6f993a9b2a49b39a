"""work, status, conflicts: what operators run and watch."""

from __future__ import annotations

import argparse
import json
import signal
import threading

from summarizer import job
from workers import metrics, registry, status
from workers.commands.common import Subparsers, couch, group, out
from workers.conflicts import resolver
from workers.runner import Runner
from workers.settings import Settings


def cmd_work(args: argparse.Namespace, settings: Settings) -> int:
    client = couch(settings)
    built = registry.build(args.workers or None, client, settings)
    runner = Runner(client, settings, built.handlers, chores=built.chores)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = metrics.serve(runner, args.metrics_port) if args.metrics_port else None
    try:
        stats = runner.run(stop, until_idle=args.until_idle)
    finally:
        if server is not None:
            server.shutdown()
    if args.until_idle:
        out(f"idle: {stats.changes} changes in {stats.batches} batches, {stats.writes} writes, "
            f"{stats.parked} parked")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    client = couch(settings)
    data = {**status.collect(client, settings), "interactions": job.status(client, settings)}
    if args.json:
        out(json.dumps(data, indent=2, default=str))
        return 0
    out(f"server {data['server']}")
    out(f"{'worker':10} {'database':44} {'pending':>8} {'processed':>9} {'writes':>7} {'parked':>6}  last error")
    for feed in data["feeds"]:
        out(f"{feed['worker']:10} {feed['db']:44} {feed['pending']:>8} {feed['processed']:>9} {feed['writes']:>7} "
            f"{feed['parked']:>6}  {feed['last_error'] or '-'}")
    for area in data["areas"]:
        # the main database's unread changes are routed when read: an area's share is at most all of them
        from_main = "0" if area["pendingFromMain"] == 0 else f"up to {data['syncPendingFromMain']}"
        out(f"area {area['area']}: {area['docs']} documents, sync lag {area['pendingToMain']} to main / "
            f"{from_main} from main, users {','.join(area['users']) or '-'}, teams {','.join(area['teams']) or '-'}")
    for act in data["activations"]:
        out(f"activation {act['plan']}: {act['state']}, {act['done']}/{act['total']} jurisdictions, "
            f"{act['tasks']} tasks ({act['tasksWritten']} written by it)")
    model = data.get("readModel")
    if model:
        out(f"read model {model['path']}: {model['docs']} documents, {model['bytes'] / 2**20:.1f} MiB, "
            f"{model['pending'] if model['pending'] is not None else 'unknown'} changes of the main database to read")
    inter = data["interactions"]
    if inter:
        last, totals = inter.get("lastPass", {}), inter.get("totals", {})
        out(f"interactions: last pass {last.get('at')} merged {last.get('records')} records into "
            f"{last.get('documents_written')} documents; in all {totals.get('records', 0)} records, "
            f"{totals.get('not_permitted', 0)} removed for lack of permission, {totals.get('parked', 0)} parked")
    audit = data["audit"]
    out("audit: " + (", ".join(f"{k} {v}" for k, v in sorted(audit.items())) or "empty"))
    return 0


def cmd_conflicts_list(args: argparse.Namespace, settings: Settings) -> int:
    records = resolver.list_resolutions(couch(settings), settings, args.db, args.limit)
    if not records:
        out("no conflict resolutions")
    for rec in records:
        losers = ",".join(d["_rev"] for d in rec.get("losers", []))
        out(f"{rec['_id']}  {rec['createdAt']}  {rec['db']}/{rec['docId']}  winner {rec['winnerRev']}  "
            f"losers {losers}  ({rec['rule']})")
    return 0


def cmd_conflicts_revert(args: argparse.Namespace, settings: Settings) -> int:
    entry = resolver.revert(couch(settings), settings, args.audit_id, args.rev)
    out(f"restored revision {entry['restoredRev']} of {entry['db']}/{entry['docId']} as {entry['newRev']} "
        f"(audit {entry['_id']})")
    return 0


def register(sub: Subparsers) -> None:
    work = sub.add_parser("work", help="run the workers (change-feed followers) in the foreground")
    work.add_argument("workers", nargs="*", metavar="WORKER",
                      help=f"which workers (default all): {', '.join(registry.WORKERS)}")
    work.add_argument("--until-idle", action="store_true", help="exit 0 once every followed feed is caught up")
    work.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1:PORT")
    work.set_defaults(handler=cmd_work, long_running=True)

    st = sub.add_parser("status", help="each worker's position and lag, errors, parked documents")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(handler=cmd_status)

    conflicts = group(sub, "conflicts", "conflict resolutions and their revert")
    lst = conflicts.add_parser("list", help="the latest resolutions, newest first")
    lst.add_argument("--db", help="only this database")
    lst.add_argument("--limit", type=int, default=100)
    lst.set_defaults(handler=cmd_conflicts_list)
    rev = conflicts.add_parser("revert", help="restore a losing revision as the current one (audited)")
    rev.add_argument("audit_id")
    rev.add_argument("--rev", help="which losing revision, when there are several")
    rev.set_defaults(handler=cmd_conflicts_revert)
