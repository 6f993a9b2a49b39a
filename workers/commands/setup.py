"""server start/stop, init, users, up."""

from __future__ import annotations

import argparse
from pathlib import Path

from workers import embedded, provision
from workers.commands import up
from workers.commands.common import Subparsers, couch, group, out
from workers.settings import Settings


def cmd_server_start(args: argparse.Namespace, settings: Settings) -> int:
    started = embedded.start(settings, Path(args.data) if args.data else None)
    out(f"fieldsync server running at {started.url} (pid {started.pid}, data {started.data_dir})")
    if started.admin_file is not None:
        out(f"admin account kept in {started.admin_file} (mode 600)")
    return 0


def cmd_server_stop(args: argparse.Namespace, settings: Settings) -> int:
    pid = embedded.stop(settings, Path(args.data) if args.data else None)
    out(f"fieldsync server stopped (pid {pid})" if pid else "no fieldsync server was running")
    return 0


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    report = provision.init(couch(settings), settings)
    if report.writes == 0:
        out("fieldsync is initialised: nothing to change")
    else:
        out(
            f"initialised: {len(report.created)} databases created, {len(report.secured)} secured, "
            f"{len(report.design_docs)} design documents and {len(report.documents)} documents written"
        )
    return 0


def cmd_users_add(args: argparse.Namespace, settings: Settings) -> int:
    roles = [r for r in (args.roles or "").split(",") if r.strip()]
    report = provision.add_user(couch(settings), settings, args.name, args.password, roles)
    out(f"user {args.name}: meta database {settings.dbs.user_meta(args.name)}, {report.writes} writes")
    return 0


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    return up.run(settings, out)


def register(sub: Subparsers) -> None:
    server = group(sub, "server", "start or stop the embedded server (PouchDB Server on loopback)")
    for name, handler, text in (("start", cmd_server_start, "start the embedded server in the background"),
                                ("stop", cmd_server_stop, "stop the embedded server of this data directory")):
        parser = server.add_parser(name, help=text)
        parser.add_argument("--data", help="data directory (default .fieldsync/ or FIELDSYNC_DATA_DIR)")
        parser.set_defaults(handler=handler)

    sub.add_parser("init", help="create databases, security, design documents, default settings").set_defaults(
        handler=cmd_init)

    users = group(sub, "users", "CouchDB users and their meta databases")
    add = users.add_parser("add", help="create or update a user and its meta database")
    add.add_argument("name")
    add.add_argument("--password", help="required for a new user; changes it for an existing one")
    add.add_argument("--roles", default="", help="comma-separated roles, e.g. chw,spray_operator")
    add.set_defaults(handler=cmd_users_add)

    sub.add_parser("up", help="embedded server + init + workers + scheduler in the foreground (Ctrl-C stops)"
                   ).set_defaults(handler=cmd_up, long_running=True)
