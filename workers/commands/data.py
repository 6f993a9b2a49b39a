"""load, plans: what goes into the main database."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from workers import loader
from workers.commands.common import Subparsers, couch, group, out
from workers.errors import ConfigError
from workers.evaluator.templates import new_plan_from_template, template_names
from workers.plans.plan_status import set_status
from workers.settings import Settings


def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    report = loader.load(couch(settings), settings.dbs.main, [Path(p) for p in args.paths])
    for rejected in report.rejected:
        sys.stderr.write(f"rejected: {rejected}\n")
    out(f"{len(report.written)} documents written, {len(report.unchanged)} unchanged, "
        f"{len(report.rejected)} rejected")
    return 1 if report.rejected else 0


def cmd_plans_activate(args: argparse.Namespace, settings: Settings) -> int:
    plan = set_status(couch(settings), settings, args.plan_id, "active")
    out(f"plan {plan['identifier']} is active: the plan worker generates its tasks (fieldsync status shows "
        "the progress)")
    return 0


def cmd_plans_new(args: argparse.Namespace, settings: Settings) -> int:
    if args.template not in template_names():
        raise ConfigError(f"unknown template {args.template!r}: choose from {', '.join(template_names())}")
    try:
        start = date.fromisoformat(args.start) if args.start else datetime.now(UTC).date()
        end = date.fromisoformat(args.end) if args.end else start + timedelta(days=90)
        plan = new_plan_from_template(args.template, args.jurisdiction, args.title, start, end, datetime.now(UTC))
    except ValueError as exc:
        raise ConfigError(f"plans new: {exc}") from None
    client = couch(settings)
    if client.get(settings.dbs.main, args.jurisdiction) is None:
        sys.stderr.write(f"note: jurisdiction {args.jurisdiction} is not in {settings.dbs.main} (yet)\n")
    client.put(settings.dbs.main, plan)
    out(f"draft plan {plan['identifier']} ({args.template}, {start} to {end}); "
        f"activate it with: fieldsync plans activate {plan['identifier']}")
    return 0


def register(sub: Subparsers) -> None:
    load = sub.add_parser("load", help="load OpenSRP JSON documents (a file, an array, or a folder), validated")
    load.add_argument("paths", nargs="+", metavar="PATH")
    load.set_defaults(handler=cmd_load)

    plans = group(sub, "plans", "plans: activation, drafts from templates")
    activate = plans.add_parser("activate", help="set a plan active: the plan worker generates its tasks")
    activate.add_argument("plan_id")
    activate.set_defaults(handler=cmd_plans_activate)
    new = plans.add_parser("new", help="a draft plan from a template (Dynamic-IRS, Dynamic-FI, Dynamic-MDA)")
    new.add_argument("--template", required=True)
    new.add_argument("--jurisdiction", required=True, help="the jurisdiction id the plan covers")
    new.add_argument("--title", required=True)
    new.add_argument("--start", help="YYYY-MM-DD (default today)")
    new.add_argument("--end", help="YYYY-MM-DD (default start + 90 days)")
    new.set_defaults(handler=cmd_plans_new)
