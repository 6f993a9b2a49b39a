"""demo, export map: what a newcomer runs first, and the map of a plan."""

from __future__ import annotations

import argparse
import json
import sys

from demo import report, scenario
from workers import embedded
from workers.commands.common import Subparsers, couch, group, out
from workers.errors import EmbeddedServerError
from workers.mapexport import structures_geojson
from workers.settings import Settings


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    settings = settings.model_copy(update={"db_prefix": args.prefix})
    if args.use_couch_url:
        settings = scenario.use_server(settings, out)
        started = False
        users = scenario.DemoUsers(prefix=f"{args.prefix}-")
    else:
        try:
            settings, started = scenario.ensure_server(settings, out)
        except EmbeddedServerError as exc:
            raise EmbeddedServerError(f"{exc} (to run the demo on the server already there, add --use-couch-url)"
                                      ) from None
        users = scenario.DemoUsers()
    size = scenario.DemoSize(areas=args.areas, structures_per_area=args.structures)
    try:
        data = scenario.run(settings, size, out, users=users)
        for line in report.render(data):
            out(line)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2, default=str)
            out(f"report written to {args.json}")
    finally:
        if started and not args.keep_running:
            embedded.stop(settings)
            out("embedded server stopped (--keep-running keeps it up to explore the databases)")
    return 0


def cmd_export_map(args: argparse.Namespace, settings: Settings) -> int:
    collection = structures_geojson(couch(settings), settings, args.plan)
    json.dump(collection, sys.stdout, indent=None if args.compact else 1)
    sys.stdout.write("\n")
    return 0


def register(sub: Subparsers) -> None:
    demo = sub.add_parser(
        "demo", help="the seed's walk-throughs end to end, with devices: on the embedded server (started when none "
        "runs), or with --use-couch-url on the server of FIELDSYNC_COUCH_URL (CouchDB 3 or the embedded one)")
    demo.add_argument("--areas", type=int, default=3, help="operational areas (default 3)")
    demo.add_argument("--structures", type=int, default=80, help="structures per area (default 80)")
    demo.add_argument("--prefix", default="demo", help="database prefix of the demo (emptied first; default demo)")
    demo.add_argument("--keep-running", action="store_true", help="leave the embedded server running at the end")
    demo.add_argument(
        "--use-couch-url", action="store_true",
        help="run on the server of FIELDSYNC_COUCH_URL (admin credentials in the URL) instead of the embedded "
        "one: only the databases of --prefix are emptied and written, and the demo's users are named "
        "<prefix>-ana, <prefix>-ben...; every other database and user is left alone")
    demo.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    demo.set_defaults(handler=cmd_demo)

    export = group(sub, "export", "exports for maps and other tools")
    mp = export.add_parser("map", help="a plan's structures as GeoJSON, coloured by their tasks' business status")
    mp.add_argument("--plan", required=True, help="plan identifier")
    mp.add_argument("--compact", action="store_true", help="one line")
    mp.set_defaults(handler=cmd_export_map)
