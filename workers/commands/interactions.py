"""summarize, scheduler, report: task interaction tracking."""

from __future__ import annotations

import argparse
import re
import signal
import threading

from summarizer import job, report, scheduler
from workers.commands.common import Subparsers, couch, group, out
from workers.errors import ConfigError
from workers.settings import Settings

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _date(value: str | None, flag: str) -> str | None:
    if value is not None and not DATE.match(value):
        raise ConfigError(f"{flag} {value!r}: expected YYYY-MM-DD")
    return value


def cmd_summarize(args: argparse.Namespace, settings: Settings) -> int:
    result = job.run_pass(couch(settings), settings, date=_date(args.date, "--date"), full=True)
    out(f"merged {result.records} records of {result.users} users into {result.documents_written} daily "
        f"documents; removed {result.removed} ({result.not_permitted} of users without "
        f"{job.PERMISSION}); parked {result.parked}; {result.ms:.0f} ms"
        + (f"; {result.failed} meta databases could not be merged (see the log)" if result.failed else ""))
    return 1 if result.failed else 0


def cmd_scheduler(args: argparse.Namespace, settings: Settings) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    scheduler.run(settings, stop)
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    start, end = _date(args.start, "--from"), _date(args.end, "--to")
    out(report.render(report.rows(couch(settings), settings, start or "0000", end or "9999"), args.format))
    return 0


def register(sub: Subparsers) -> None:
    summarize = sub.add_parser("summarize", help="one merge pass of task-interaction records")
    summarize.add_argument("--date", help="only records of this day (YYYY-MM-DD)")
    summarize.set_defaults(handler=cmd_summarize)

    sched = sub.add_parser("scheduler", help="the periodic jobs (APScheduler) in the foreground")
    sched.set_defaults(handler=cmd_scheduler, long_running=True)

    rep = group(sub, "report", "reports for analysts")
    inter = rep.add_parser("interactions", help="merged daily interaction documents as a table or CSV")
    inter.add_argument("--from", dest="start", help="first day (YYYY-MM-DD)")
    inter.add_argument("--to", dest="end", help="last day (YYYY-MM-DD)")
    inter.add_argument("--format", choices=("table", "csv"), default="table")
    inter.set_defaults(handler=cmd_report)
